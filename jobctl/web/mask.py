"""Masking of payload fields that look like secrets or personal data, for display (`dashboard_mask`).

The setting is a comma list: `secrets` (the default: passwords, tokens, keys, signatures), `personal`
(e-mail addresses, names, phone numbers, user ids, addresses) and any other word, masking the fields whose
name contains it; `none` shows everything. Keys are compared lower-cased without `_` and `-`.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "****"
_SECRET_PARTS = ("password", "passwd", "secret", "token", "apikey", "authorization", "credential", "privatekey",
                 "signature", "cookie", "session", "otp")
_SECRET_NAMES = ("auth", "key", "pin", "pass")
_PERSONAL_PARTS = ("email", "phone", "address", "birth", "firstname", "lastname", "fullname", "username", "userid",
                   "playerid", "ssn", "iban", "passport")
_PERSONAL_NAMES = ("to", "cc", "bcc", "from", "name", "ip", "user", "mobile")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _norm(key: str) -> str:
    return key.lower().replace("_", "").replace("-", "")


class Masker:
    """Masks the fields one `dashboard_mask` setting names; `apply` returns a masked copy."""

    def __init__(self, setting: str | None) -> None:
        words = {w.strip().lower() for w in (setting or "").split(",") if w.strip()}
        self.off = not words or words == {"none"}
        self.secrets = "secrets" in words
        self.personal = "personal" in words
        self.extra = tuple(_norm(w) for w in words - {"secrets", "personal", "none"})

    def hides(self, key: str) -> bool:
        """Whether a field of this name is masked."""
        k = _norm(key)
        if self.secrets and (k in _SECRET_NAMES or any(p in k for p in _SECRET_PARTS)):
            return True
        if self.personal and (k in _PERSONAL_NAMES or any(p in k for p in _PERSONAL_PARTS)):
            return True
        return any(p in k for p in self.extra)

    def apply(self, value: Any) -> Any:
        """A copy of `value` with masked fields (at any depth) replaced by `****`."""
        if self.off:
            return value
        if isinstance(value, dict):
            return {k: MASK if self.hides(str(k)) and v not in (None, "") else self.apply(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.apply(v) for v in value]
        if self.personal and isinstance(value, str) and _EMAIL.match(value):
            return MASK
        return value
