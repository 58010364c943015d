"""Declarations only (no pydantic, no Pillow), so `jobctl --help` and completion stay cheap.

The entry point `jobctl.jobs: reports = jobctl_reports:JOBS` in pyproject.toml points here.
"""

from jobctl.api import JobType, QueueSpec

JOBS = [
    QueueSpec("reports", {"attempts": 3, "backoff": "exponential", "backoff_delay_s": 2, "concurrency": 2,
                          "timeout_s": 120}),
    JobType("generate-report", queue="reports", model="jobctl_reports.jobs:ReportJob",
            processor="jobctl_reports.jobs:generate_report"),
    JobType("send-welcome-email", queue="email", model="jobctl_reports.jobs:WelcomeEmail",
            processor="jobctl_reports.jobs:send_welcome_email"),
]
