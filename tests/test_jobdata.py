"""jobctl.jobdata: the total decoder of RQ's `data` field, on hand-made layouts, real RQ jobs and fuzz."""

from __future__ import annotations

import json
import pickle
import random
import time
import zlib
from datetime import UTC, datetime
from typing import Any

import pytest
import rq
from rq.job import Job
from rq.serializers import JSONSerializer

from jobctl import jobdata, keys
from jobctl.jobdata import Decoded, Refused, decode, encode
from jobctl.jobs import encode_data, job_fields, new_id
from jobctl.runtime import Runtime

EMAIL = {"to": "ann@example.com", "subject": "Hi", "template": "welcome", "data": {"name": "Ann"}}
NOT = "not a jobctl job: "
NUMBER = NOT + "data has NaN, Infinity or an oversized number"
z = zlib.compress


def nested(depth: int) -> dict[str, Any]:
    """A payload `depth` objects deep."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def bomb(size: int) -> bytes:
    """zlib of `size` bytes of "[", compressed in 1 MiB chunks so the plain text is never held whole."""
    packer, chunk = zlib.compressobj(1), b"[" * 2**20
    return b"".join(packer.compress(chunk) for _ in range(size // 2**20)) + packer.flush()


ACCEPTED: list[tuple[str, bytes | str, Decoded]] = [
    ("jobctl-text", encode_data("send-email", EMAIL), Decoded("send-email", EMAIL, "json")),
    ("jobctl-bytes", encode_data("send-email", EMAIL).encode(), Decoded("send-email", EMAIL, "json")),
    ("jobctl-zlib", z(encode_data("send-email", EMAIL).encode()), Decoded("send-email", EMAIL, "zlib-json")),
    ("rq-spacing", '["send-email", null, [{"to": "a@b"}], {}]', Decoded("send-email", {"to": "a@b"}, "json")),
    ("kwargs-only", '["send-email",null,[],{"to":"a@b"}]', Decoded("send-email", {"to": "a@b"}, "json")),
    ("kwargs-zlib", z(b'["send-email",null,[],{"to":"a@b"}]'), Decoded("send-email", {"to": "a@b"}, "zlib-json")),
    ("no-arguments", '["cleanup",null,[],{}]', Decoded("cleanup", {}, "json")),
    ("empty-payload", '["cleanup",null,[{}],{}]', Decoded("cleanup", {}, "json")),
    ("raw-utf8", '["n",null,[{"k":"é😀"}],{}]'.encode(), Decoded("n", {"k": "é😀"}, "json")),
    ("escaped-pair", r'["n",null,[{"k":"\u00e9\ud83d\ude00"}],{}]', Decoded("n", {"k": "é😀"}, "json")),
    ("name-200", json.dumps(["n" * 200, None, [{}], {}]), Decoded("n" * 200, {}, "json")),
    ("depth-64", encode_data("n", nested(64)), Decoded("n", nested(64), "json")),
    ("big-float", '["n",null,[{"x":1e308,"y":-0.0}],{}]', Decoded("n", {"x": 1e308, "y": 0.0}, "json")),
]


@pytest.mark.parametrize(("raw", "expected"), [case[1:] for case in ACCEPTED], ids=[case[0] for case in ACCEPTED])
def test_accepted(raw: bytes | str, expected: Decoded) -> None:
    assert decode(raw) == expected


PICKLE: tuple[str, None, tuple[str], dict[str, Any]] = ("os.system", None, ("echo hi",), {})
REFUSED: list[tuple[str, object, str]] = [
    ("none", None, "job hash has no data"),
    ("empty-bytes", b"", "job hash has empty data"),
    ("empty-text", "", "job hash has empty data"),
    ("int", 42, NOT + "data is neither bytes nor text"),
    ("invalid-utf8", b'["n",null,[{"k":"\xff"}],{}]', NOT + "data is not UTF-8"),
    ("invalid-utf8-zlib", z(b'["n",null,[{"k":"\xc3\x28"}],{}]'), NOT + "data is not UTF-8"),
    ("surrogate-raw-bytes", b'["n",null,[{"k":"\xed\xb3\xbf"}],{}]', NOT + "data is not UTF-8"),
    ("surrogate-in-str", '["n",null,[{"k":"\udcff"}],{}]', NOT + "data is not UTF-8"),
    ("surrogate-escaped", r'["n",null,[{"k":"\udcff"}],{}]', NOT + "data has a lone surrogate"),
    ("surrogate-escaped-key", r'["n",null,[{"\ud800":1}],{}]', NOT + "data has a lone surrogate"),
    ("surrogate-in-kwargs", r'["n",null,[],{"k":["\udcff"]}]', NOT + "data has a lone surrogate"),
    ("surrogate-in-name", r'["\udcff",null,[{}],{}]', NOT + "job name has unprintable characters"),
    ("text", "hello", NOT + "data is not JSON"),
    ("bom", "\ufeff" + encode_data("n", {}), NOT + "data is not JSON"),
    ("whitespace", b"   ", NOT + "data is not JSON"),
    ("number", "42", NOT + "data is not a [name, instance, args, kwargs] list"),
    ("string", '"send-email"', NOT + "data is not a [name, instance, args, kwargs] list"),
    ("dict", '{"name":"send-email"}', NOT + "data is not a [name, instance, args, kwargs] list"),
    ("list-of-3", '["n",null,[{}]]', NOT + "data is not a [name, instance, args, kwargs] list"),
    ("list-of-5", '["n",null,[{}],{},1]', NOT + "data is not a [name, instance, args, kwargs] list"),
    ("name-int", '[1,null,[{}],{}]', NOT + "data has no job name"),
    ("name-null", '[null,null,[{}],{}]', NOT + "data has no job name"),
    ("name-empty", '["",null,[{}],{}]', NOT + "data has no job name"),
    ("name-201", json.dumps(["n" * 201, None, [{}], {}]), NOT + "job name is longer than 200 characters"),
    ("name-newline", '["a\\nb",null,[{}],{}]', NOT + "job name has unprintable characters"),
    ("instance", '["n",{"self":1},[{}],{}]', NOT + "data calls a method on an instance"),
    ("instance-false", '["n",false,[{}],{}]', NOT + "data calls a method on an instance"),
    ("args-dict", '["n",null,{},{}]', NOT + "args are not a list or kwargs are not an object"),
    ("kwargs-list", '["n",null,[],[]]', NOT + "args are not a list or kwargs are not an object"),
    ("two-args", '["n",null,[{},{}],{}]', NOT + "data has more than one positional argument"),
    ("args-and-kwargs", '["n",null,[{}],{"to":"a"}]', NOT + "data has both a positional payload and keyword arguments"),
    ("payload-int", '["n",null,[1],{}]', NOT + "payload is not a JSON object"),
    ("payload-list", '["n",null,[[]],{}]', NOT + "payload is not a JSON object"),
    ("payload-null", '["n",null,[null],{}]', NOT + "payload is not a JSON object"),
    ("nested-2000-list", "[" * 2000 + "]" * 2000, NOT + "data is nested too deeply"),
    ("nested-2000-payload", '["n",null,[' + '{"a":' * 2000 + "1" + "}" * 2000 + "],{}]",
     NOT + "data is nested too deeply"),
    ("depth-65", encode_data("n", nested(65)), NOT + "payload is nested deeper than 64 levels"),
    ("nan", '["n",null,[{"x":NaN}],{}]', NUMBER),
    ("infinity", '["n",null,[{"x":-Infinity}],{}]', NUMBER),
    ("float-overflow", '["n",null,[{"x":1e999}],{}]', NUMBER),
    ("int-5000-digits", '["n",null,[{"x":' + "9" * 5000 + "}],{}]", NUMBER),
    *[(f"pickle-{p}", pickle.dumps(PICKLE, protocol=p), NOT + "pickled data refused") for p in (2, 3, 4, 5)],
    *[(f"pickle-{p}-zlib", z(pickle.dumps(PICKLE, protocol=p)), NOT + "pickled data refused") for p in (2, 5)],
    ("pickle-0", pickle.dumps(PICKLE, protocol=0), NOT + "data is not JSON"),
    ("zlib-corrupt", b"x\x9c" + b"\xff" * 20, NOT + "compressed data is corrupt"),
    ("zlib-truncated", z(encode_data("n", EMAIL).encode())[:-6], NOT + "compressed data is truncated"),
    ("zlib-trailing", z(encode_data("n", EMAIL).encode()) + b"junk", NOT + "compressed data has trailing bytes"),
    ("zlib-twice", z(z(encode_data("n", EMAIL).encode())), NOT + "data is not UTF-8"),
    ("zlib-empty", z(b""), NOT + "data is not JSON"),
    ("over-16-mib", b" " * (16 * 2**20 + 1), NOT + "data is larger than 16 MiB"),
    ("over-16-mib-text", " " * (16 * 2**20 + 1), NOT + "data is larger than 16 MiB"),
]


@pytest.mark.parametrize(("raw", "reason"), [case[1:] for case in REFUSED], ids=[case[0] for case in REFUSED])
def test_refused(raw: Any, reason: str) -> None:
    result = decode(raw)
    assert isinstance(result, Refused) and result.reason == reason


def test_a_refusal_names_the_job_when_the_data_does() -> None:
    assert decode('["os.system", null, ["rm -rf /"], {}]') == Refused(NOT + "payload is not a JSON object", "os.system")
    assert decode('[5, null, [{}], {}]') == Refused(NOT + "data has no job name")


def test_zlib_bomb_is_refused_quickly() -> None:
    data = bomb(100 * 2**20)
    assert len(data) < jobdata.MAX_RAW_BYTES  # small on the wire, 100 MiB inflated
    start = time.perf_counter()
    assert decode(data) == Refused(NOT + "data decompresses past 64 MiB")
    assert time.perf_counter() - start < 2


def test_decompressed_limit_is_inclusive() -> None:
    exactly = bomb(jobdata.MAX_JSON_BYTES)  # at the limit: inflated whole, then refused by the JSON parser
    assert decode(exactly) == Refused(NOT + "data is nested too deeply")


MARKS: list[str] = []


def _mark(text: str) -> str:
    MARKS.append(text)
    return text


class _Gadget:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return _mark, ("unpickled",)


def test_pickle_is_never_loaded() -> None:
    data = pickle.dumps(("n", None, (_Gadget(),), {}), protocol=5)
    pickle.loads(data)
    assert MARKS == ["unpickled"]  # the gadget runs code when unpickled...
    MARKS.clear()
    assert decode(data) == Refused(NOT + "pickled data refused")
    assert decode(z(data)) == Refused(NOT + "pickled data refused")
    assert MARKS == []  # ...and decode never runs it


def test_rq_default_serializer_job_is_refused(rt: Runtime) -> None:
    job = rq.Queue("email", connection=rt.redis).enqueue("os.system", "echo hi")
    raw = rt.redis.hget(job.key, "data")
    assert isinstance(raw, bytes) and raw[:1] == b"x"  # RQ zlib-compresses its pickle
    assert decode(raw) == Refused(NOT + "pickled data refused")


def test_rq_json_serializer_positional_job(rt: Runtime) -> None:
    job = rq.Queue("email", connection=rt.redis, serializer=JSONSerializer).enqueue("send-email", EMAIL)
    raw = rt.redis.hget(job.key, "data")
    assert isinstance(raw, bytes)
    assert zlib.decompress(raw) == json.dumps(["send-email", None, [EMAIL], {}]).encode()  # default separators
    assert decode(raw) == Decoded("send-email", EMAIL, "zlib-json")


def test_rq_json_serializer_kwargs_job(rt: Runtime) -> None:
    queue = rq.Queue("email", connection=rt.redis, serializer=JSONSerializer)
    job = queue.enqueue("send-email", to="ann@example.com", subject="Hi", description="RQ keeps this one")
    raw = rt.redis.hget(job.key, "data")
    assert isinstance(raw, bytes)
    # RQ pops its own options (description, ttl, meta, retry, ...) from kwargs: they never reach the payload.
    assert decode(raw) == Decoded("send-email", {"to": "ann@example.com", "subject": "Hi"}, "zlib-json")


def test_jobctl_job_survives_rq_save(rt: Runtime) -> None:
    policy = rt.settings.queues.for_job("send-email")
    payload = {**EMAIL, "data": {"name": "Zoë", "n": [1, 2.5, None, True]}}
    job_id = new_id()
    fields: dict[Any, Any] = job_fields(policy, "send-email", payload, 5, datetime.now(UTC))
    rt.redis.hset(keys.job(job_id), mapping=fields)
    assert decode(rt.redis.hget(keys.job(job_id), "data")) == Decoded("send-email", payload, "json")
    job = Job.fetch(job_id, connection=rt.redis, serializer=JSONSerializer)
    assert job.args == [payload]
    job.save()
    raw = rt.redis.hget(keys.job(job_id), "data")
    assert isinstance(raw, bytes) and raw[:1] == b"x"  # recompressed by RQ
    assert zlib.decompress(raw) == encode("send-email", payload).encode()  # the bytes RQ kept, unchanged
    assert decode(raw) == Decoded("send-email", payload, "zlib-json")


@pytest.mark.parametrize("payload", [EMAIL, {}, {"k": "é😀\u2028", "n": [1, -2.5, None, False]}, nested(64)])
def test_encode_matches_encode_data_and_round_trips(payload: dict[str, Any]) -> None:
    assert encode("send-email", payload) == encode_data("send-email", payload)
    assert decode(encode("send-email", payload)) == Decoded("send-email", payload, "json")


@pytest.mark.parametrize(("name", "payload", "reason"), [
    ("", {}, NOT + "data has no job name"),
    ("n" * 201, {}, NOT + "job name is longer than 200 characters"),
    ("n", {"x": float("nan")}, NUMBER),
    ("n", {"k": "\udcff"}, NOT + "data has a lone surrogate"),
    ("n", nested(65), NOT + "payload is nested deeper than 64 levels"),
])
def test_encode_refuses_what_decode_would_refuse(name: str, payload: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError) as info:
        encode(name, payload)
    assert str(info.value) == reason


TOKENS = [b"[", b"]", b"{", b"}", b'"', b",", b":", b"null", b"NaN", b"1e999", b"\\udcff", b"\\ud83d", b"-", b"0",
          b"\xff", b"\xed\xa0\x80", b"\x80\x05", b"x\x9c", b"[]", b"{}", b'"k":1']


def _mutate(rng: random.Random, data: bytes) -> bytes:
    for _ in range(rng.randint(1, 3)):
        at = rng.randint(0, len(data))
        op = rng.randrange(5)
        if op == 0 and data:
            at = min(at, len(data) - 1)
            data = data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1:]
        elif op == 1:
            data = data[:at] + data[at + rng.randint(1, 4):]
        elif op == 2:
            data = data[:at] + rng.choice(TOKENS) + data[at:]
        elif op == 3:
            data = data[:at]
        else:
            data = data[:at] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 3))) + data[at:]
    return data


def _check(result: Decoded | Refused) -> bool:
    """Invariants of every result; True when decoded."""
    if isinstance(result, Refused):
        assert result.reason.startswith((NOT, "job hash has "))
        return False
    assert isinstance(result, Decoded) and isinstance(result.payload, dict)
    assert 0 < len(result.name) <= 200 and result.layout in ("json", "zlib-json")
    assert decode(encode(result.name, result.payload)) == Decoded(result.name, result.payload, "json")
    return True


def test_fuzz_never_raises() -> None:
    rng = random.Random(20240601)
    seeds = [encode_data(n, p).encode() for n, p in [("send-email", EMAIL), ("n", {}), ("n", nested(5))]]
    seeds += [b'["send-email", null, [], {"to": "a", "n": [1, 2.5]}]', pickle.dumps(PICKLE, protocol=5)]
    cases: list[Any] = [bytes(rng.randrange(256) for _ in range(rng.randint(0, 40))) for _ in range(1000)]
    cases += ["".join(chr(rng.randrange(0x10FFFF)) for _ in range(rng.randint(0, 20))) for _ in range(300)]
    for _ in range(3000):
        mutated = _mutate(rng, rng.choice(seeds))
        cases.append(mutated if rng.random() < 0.7 else z(mutated))
        if rng.random() < 0.1:
            cases.append(_mutate(rng, z(rng.choice(seeds))))
    start = time.perf_counter()
    outcomes = [_check(decode(raw)) for raw in cases]
    assert time.perf_counter() - start < 2
    assert 100 < sum(outcomes) < len(cases) - 100  # the fuzz reaches both outcomes
