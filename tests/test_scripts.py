"""The Lua scripts' headers against their builders, and lib_time's clock and format against Python's."""

from __future__ import annotations

import calendar
import random
import re
from datetime import UTC, datetime
from importlib.resources import files

import pytest

from jobctl import scripts
from jobctl.jobs import RQ_TIME
from jobctl.runtime import Runtime
from jobctl.scripts import BUILDERS, Call, Time

LUA = files("jobctl").joinpath("lua")
ALL_SCRIPTS = sorted(p.name.removesuffix(".lua") for p in LUA.iterdir() if p.name.endswith(".lua"))


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.SCRIPT)
def test_builder_fields_are_the_header_names(builder: type[Call]) -> None:
    key_names, argv_names = scripts.header(builder.SCRIPT)
    assert list(builder.FIELDS) == key_names + argv_names
    assert len(key_names) == builder.NKEYS


@pytest.mark.parametrize("builder", [b for b in BUILDERS if b.VARIADIC], ids=lambda b: b.SCRIPT)
def test_variadic_builders_end_in_a_tail(builder: type[Call]) -> None:
    tails = re.findall(r"^-- ARGV\[(\d+)\.\.\] (\w+):", scripts.source(builder.SCRIPT), re.M)
    assert [name for _i, name in tails] == [builder.FIELDS[-1]]


def test_a_builder_is_a_keyword_only_immutable_record() -> None:
    """What the dataclasses these records replaced guaranteed, at run time too (mypy checks the calls)."""
    with pytest.raises(TypeError, match=r"unknown fields \['bogus'\]"):
        Time(bogus="1")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"missing fields \['finished', 'now', 'keep_count'\]"):
        scripts.Trim()  # type: ignore[call-arg]
    t = scripts.Trim(finished="f", now=1.5, keep_count=3)
    with pytest.raises(AttributeError, match="immutable"):
        t.now = 2.0  # type: ignore[misc]
    assert t == scripts.Trim(finished="f", now=1.5, keep_count=3) != scripts.Trim(finished="f", now=1.5, keep_count=4)
    assert hash(t) == hash(scripts.Trim(finished="f", now=1.5, keep_count=3))
    assert t.split() == (["f"], [scripts.keys.job(""), 1.5, 3])
    assert repr(Time()) == "Time(seconds='', micros='0')"
    e = scripts.Enqueue(job="j", target="t", marker="m", job_id="i", mode="now", seconds="", absolute="",
                        queue_key="q", fields=["a", 1])
    assert e.split()[1][-2:] == ["a", 1]  # the variadic tail spread over ARGV
    assert scripts.Enqueue.DEFAULTS["fields"] == ()  # no default shared mutably between calls


def test_builder_scripts_are_unique_and_exist() -> None:
    names = [b.SCRIPT for b in BUILDERS]
    assert len(set(names)) == len(names)
    assert set(names) <= set(ALL_SCRIPTS)


@pytest.mark.parametrize("name", ALL_SCRIPTS)
def test_every_script_header_parses(name: str) -> None:
    src = scripts.source(name)
    assert src.startswith(f"-- {name}.lua: ")
    scripts.header(name)  # raises unless KEYS and ARGV are each numbered 1..n
    libs = re.findall(r"^-- LIBS: (.+)$", src, re.M)
    assert len(libs) <= 1
    for lib in (libs[0].split(",") if libs else []):
        assert lib.strip() in ALL_SCRIPTS, f"{name}.lua needs missing library {lib.strip()!r}"
        assert lib.strip().startswith("lib_")
    if not name.startswith("lib_"):
        assert "-- KEYS" in src, f"{name}.lua does not say which KEYS it takes"


def test_header_rejects_bad_numbering(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = "-- x.lua: t\n-- KEYS[1] a: a\n-- ARGV[1] b: b\n-- ARGV[3] c: c\n"
    monkeypatch.setattr(scripts, "source", lambda _name: fake)
    with pytest.raises(ValueError, match="not numbered"):
        scripts.header("x")


def _python_iso(seconds: int, micros: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=micros).strftime(RQ_TIME)


def _edges() -> list[tuple[int, int]]:
    """Instants where calendar arithmetic goes wrong: epoch, day, month, year and leap-day edges."""
    out = [(0, 0), (0, 999999), (59, 1), (86399, 999999), (86400, 0), (2**31 - 1, 0), (2**31, 500000)]
    for year in (1970, 1971, 1972, 1999, 2000, 2001, 2023, 2024, 2038, 2096, 2099, 2100):
        for month, day in ((1, 1), (2, 28), (3, 1), (12, 31)) + (((2, 29),) if calendar.isleap(year) else ()):
            t = calendar.timegm((year, month, day, 0, 0, 0))
            out += [(t, 0), (t + 86399, 999999), (t - 1, 123456) if t else (t, 1)]
    out.append((calendar.timegm((2100, 12, 31, 23, 59, 59)), 999999))
    return out


def test_jc_iso_agrees_with_python(rt: Runtime) -> None:
    rng = random.Random(1234)
    end = calendar.timegm((2101, 1, 1, 0, 0, 0))
    cases = _edges() + [(rng.randrange(0, end), rng.randrange(0, 10**6)) for _ in range(4000)]
    with rt.redis.pipeline(transaction=False) as pipe:
        for s, us in cases:
            rt.scripts.run(Time(seconds=str(s), micros=str(us)), client=pipe)
        replies = pipe.execute()
    wrong = [(s, us, r[2].decode(), _python_iso(s, us)) for (s, us), r in zip(cases, replies, strict=True)
             if r[2].decode() != _python_iso(s, us)]
    assert wrong == []
    assert [(int(r[0]), int(r[1])) for r in replies] == cases


def test_time_without_seconds_is_redis_time(rt: Runtime) -> None:
    before = rt.redis.time()
    s, us, iso = rt.scripts.run(Time())
    after = rt.redis.time()
    assert before <= (int(s), int(us)) <= after
    assert iso.decode() == _python_iso(int(s), int(us))
