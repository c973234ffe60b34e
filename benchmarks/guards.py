"""Guard quality and cost: prompt-injection detection, PII redaction recall/precision, latency.

    PYTHONPATH=. .venv/bin/python benchmarks/guards.py [--seed 7] [--pii 400] [--runs 2000]

* Injection: detection rate by attack family and false-positive rate on the assembled set
  (``benchmarks/guard_sets.py``, documented there); indirect injection through ``Guards.screen_chunks``;
  and, when the ``promptinject`` package is importable (``pip install --no-deps promptinject`` into a
  scratch dir on ``PYTHONPATH``), on its public attacks (goal hijacking x rogue strings, prompt leaking,
  each appended to each of its 35 playground task prompts) against those task prompts alone (benign).
* PII: sentences with generated structured PII (emails, phones in several formats, Luhn-valid cards,
  mod-97-valid IBANs, US SSNs, UK NINOs) and look-alike negatives (order numbers, dates, invalid cards
  and IBANs, amounts). Recall: entities fully covered by a redaction. Precision: redactions that overlap
  a true entity.
* Latency: ``check_input`` on a question and on a 4,000-character text, ``screen_chunks`` on 4
  retrieved chunks, ``check_output`` on an answer: median and p95 over ``--runs`` calls.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import statistics
import string
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parent))

from guard_sets import BENIGN, CHUNK_BENIGN, HELDOUT_BENIGN, HELDOUT_INJECTIONS, INJECTIONS

from groundwork.config import GuardSettings
from groundwork.rag.answer import SYSTEM_PROMPT
from groundwork.security.detectors import find_injection, find_pii, iban_ok, luhn_ok
from groundwork.security.guards import Guards
from groundwork.types import Chunk, ScoredChunk


def _rate(hits: int, total: int) -> str:
    return f"{hits}/{total} = {100 * hits / max(total, 1):.1f}%"


def _set_report(name: str, attacks: tuple[tuple[str, str], ...], benign: tuple[str, ...]) -> None:
    by_family: dict[str, list[bool]] = defaultdict(list)
    for family, text in attacks:
        by_family[family].append(bool(find_injection(text)))
    detected = sum(sum(v) for v in by_family.values())
    print(f"{name}: detection {_rate(detected, len(attacks))}")
    for family, hits in sorted(by_family.items()):
        print(f"  {family:<13} {_rate(sum(hits), len(hits))}")
    false = [t for t in benign if find_injection(t)]
    print(f"{name}: false positives {_rate(len(false), len(benign))}")
    for t in false:
        print(f"  FP: {t}")
    for f, t in attacks:
        if not find_injection(t):
            print(f"  missed: {f}: {t}")


def injection_report() -> None:
    _set_report("assembled set (tuned on)", INJECTIONS, BENIGN)
    _set_report("held-out set (never tuned on)", HELDOUT_INJECTIONS, HELDOUT_BENIGN)
    guards = Guards(GuardSettings())
    indirect = [t for f, t in INJECTIONS + HELDOUT_INJECTIONS if f == "indirect"]
    chunks = [_chunk(t, i) for i, t in enumerate([*indirect, *CHUNK_BENIGN])]
    kept, _ = guards.screen_chunks(chunks)
    kept_ids = {sc.chunk.id for sc in kept}
    dropped_bad = sum(f"c{i}" not in kept_ids for i in range(len(indirect)))
    dropped_good = sum(f"c{i}" not in kept_ids for i in range(len(indirect), len(chunks)))
    print(
        f"retrieved chunks: injected dropped {_rate(dropped_bad, len(indirect))}, "
        f"benign dropped {_rate(dropped_good, len(CHUNK_BENIGN))}"
    )


def _promptinject() -> ModuleType | None:
    spec = importlib.util.find_spec("promptinject")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "prompt_data.py"
    data_spec = importlib.util.spec_from_file_location("promptinject_data", path)
    if data_spec is None or data_spec.loader is None:
        return None
    module = importlib.util.module_from_spec(data_spec)
    data_spec.loader.exec_module(module)  # only the data module: the package imports openai at import
    return module


def promptinject_report() -> None:
    data = _promptinject()
    if data is None:
        print("promptinject: not installed (pip install --no-deps promptinject into a dir on PYTHONPATH)")
        return
    rogue = list(data.rogue_strings.values())
    hijack = [a["instruction"] for a in data.goal_hikacking_attacks.values()]
    attacks = [a.replace("{REPLACE_rogue_string}", r) for a in hijack for r in rogue]
    attacks += [a["instruction"] for a in data.prompt_leaking_attacks.values()]
    tasks = [p["instruction"] for p in data.openai_playground_prompts.values()]
    combined = [f"{t}\n{a}" for t in tasks for a in attacks]
    hits = sum(bool(find_injection(a)) for a in attacks)
    hits_c = sum(bool(find_injection(c)) for c in combined)
    fp = [t for t in tasks if find_injection(t)]
    print(f"promptinject attacks alone: detection {_rate(hits, len(attacks))}")
    print(f"promptinject attacks inside its 35 task prompts: detection {_rate(hits_c, len(combined))}")
    print(f"promptinject task prompts (benign): false positives {_rate(len(fp), len(tasks))}")
    for a in attacks:
        if not find_injection(a):
            print(f"  missed: {a[:90]!r}")


def _chunk(text: str, i: int) -> ScoredChunk:
    return ScoredChunk(Chunk(f"c{i}", "d", "c", i, text, (), 0, len(text)), 1.0)


# ---- PII -------------------------------------------------------------------------------------------------


def _luhn_complete(prefix: str, rng: random.Random, length: int) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for d in string.digits:
        if luhn_ok(body + d):
            return body + d
    raise AssertionError("unreachable")


def _card(rng: random.Random) -> str:
    prefix, length = rng.choice([("4", 16), ("51", 16), ("37", 15), ("6011", 16)])
    digits = _luhn_complete(prefix, rng, length)
    sep = rng.choice(["", " ", "-"])
    if length == 15:
        return sep.join([digits[:4], digits[4:10], digits[10:]])
    return sep.join(digits[i : i + 4] for i in range(0, 16, 4))


def _iban(rng: random.Random) -> str:
    country, bban_len = rng.choice([("DE", 18), ("GB", 18), ("FR", 23), ("NL", 14), ("ES", 20)])
    if country in ("GB", "NL"):
        bban = "".join(rng.choice(string.ascii_uppercase) for _ in range(4))
        bban += "".join(rng.choice(string.digits) for _ in range(bban_len - 4))
    else:
        bban = "".join(rng.choice(string.digits) for _ in range(bban_len))
    for check in range(100):
        iban = f"{country}{check:02d}{bban}"
        if iban_ok(iban):
            break
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4)) if rng.random() < 0.6 else iban


def _phone(rng: random.Random) -> str:
    d = lambda n: "".join(rng.choice(string.digits) for _ in range(n))  # noqa: E731
    return rng.choice(
        [
            f"+1 {rng.randint(201, 989)} {d(3)} {d(4)}",
            f"({rng.randint(201, 989)}) {d(3)}-{d(4)}",
            f"+44 20 {d(4)} {d(4)}",
            f"+49 30 {d(8)}",
            f"0{rng.randint(6, 7)}{d(1)} {d(3)} {d(4)}",
            f"+33 {rng.randint(1, 9)} {d(2)} {d(2)} {d(2)} {d(2)}",
            f"+{rng.randint(30, 49)}{d(9)}",
        ]
    )


def _ssn(rng: random.Random) -> str:
    ssn = f"{rng.randint(1, 899):03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"
    return ssn.replace("666-", "667-")


def _nino(rng: random.Random) -> str:
    first, second = rng.choice("ABCEGHJKLMNPRSTWXYZ"), rng.choice("ABCEGHJKLMNPRSTWXYZ")
    pairs = " ".join(str(rng.randint(10, 99)) for _ in range(3))
    return f"{first}{second} {pairs} {rng.choice('ABCD')}"


def _email(rng: random.Random) -> str:
    user = rng.choice(["jane.doe", "j_smith", "m.garcia+hr", "li.wei", "o.brien", "anna-k"])
    user += str(rng.randint(1, 99))
    return f"{user}@{rng.choice(['example.com', 'corp.example.co.uk', 'mail.example.org'])}"


GENERATORS: dict[str, Callable[[random.Random], str]] = {
    "email": _email,
    "phone": _phone,
    "card": _card,
    "iban": _iban,
    "national_id": lambda r: _ssn(r) if r.random() < 0.5 else _nino(r),
}
TEMPLATES = (
    "Please update my record: {}.",
    "You can reach the applicant at {} during office hours.",
    "Refund to {} was approved on Monday.",
    "Her details ({}) are in the attached form.",
    "{} belongs to the new contractor.",
)
NEGATIVES = (
    "Order {n} ships on 2025-03-14 at 10:30.",
    "Invoice INV-{n} totals 1,234.56 EUR for 12 items.",
    "Version 4.12.1 was released on 14.03.2025.",
    "Card number 4111 1111 1111 1112 failed the check.",
    "The IBAN DE89 3704 0044 0532 0130 01 was rejected.",
    "Room 2.041 holds 25 people; the budget is 12000 EUR.",
    "Ticket #{n} was closed after 3 days.",
    "The sensor reports 1013 hPa and 21.5 degrees at 08:45.",
)


def pii_report(n: int, seed: int) -> None:
    rng = random.Random(seed)
    truth: list[tuple[str, str, int, int]] = []  # kind, text, start, end
    texts: list[str] = []
    for i in range(n):
        kind = list(GENERATORS)[i % len(GENERATORS)]
        value = GENERATORS[kind](rng)
        template = rng.choice(TEMPLATES)
        text = template.format(value)
        start = template.index("{}")
        truth.append((kind, text, start, start + len(value)))
        texts.append(text)
    negatives = [rng.choice(NEGATIVES).format(n=rng.randint(10_000, 99_999_999)) for _ in range(n // 2)]
    recall: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    true_pos = false_pos = 0
    for kind, text, start, end in truth:
        totals[kind] += 1
        found = find_pii(text)
        if any(f.start <= start and f.end >= end for f in found):
            recall[kind] += 1
        for f in found:
            if f.start < end and start < f.end:
                true_pos += 1
            else:
                false_pos += 1
    neg_found = [(t, f) for t in negatives for f in find_pii(t)]
    false_pos += len(neg_found)
    print(f"PII: {n} generated entities, {len(negatives)} look-alike negative sentences (seed {seed})")
    print(f"  recall (entity fully redacted): {_rate(sum(recall.values()), n)}")
    for kind in GENERATORS:
        print(f"    {kind:<12} {_rate(recall[kind], totals[kind])}")
    print(f"  precision (redactions on a true entity): {_rate(true_pos, true_pos + false_pos)}")
    for text, f in neg_found[:5]:
        print(f"    FP on negative: {f.kind} {text[f.start : f.end]!r} in {text!r}")
    missed = [
        (k, t[s:e]) for k, t, s, e in truth if not any(f.start <= s and f.end >= e for f in find_pii(t))
    ]
    for k, v in missed[:8]:
        print(f"    missed {k}: {v!r}")


# ---- latency ---------------------------------------------------------------------------------------------


def _time(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - t0) / 1000)
    samples.sort()
    return statistics.median(samples), samples[int(0.95 * (len(samples) - 1))]


def latency_report(runs: int) -> None:
    guards = Guards(GuardSettings())
    question = "How many vacation days do employees get, and can I carry them over to next year?"
    long_text = (CHUNK_BENIGN[0] + " ") * (4000 // (len(CHUNK_BENIGN[0]) + 1))
    chunks = [_chunk(t * 3, i) for i, t in enumerate(CHUNK_BENIGN[:4])]
    answer = "Employees accrue 25 days of paid vacation per year [1]. Up to five days carry over [1]."
    cases: list[tuple[str, Callable[[], object]]] = [
        (f"check_input, question ({len(question)} chars)", lambda: guards.check_input([question])),
        (f"check_input, text ({len(long_text)} chars)", lambda: guards.check_input([long_text])),
        ("screen_chunks, 4 chunks (~900 chars each)", lambda: guards.screen_chunks(chunks)),
        ("check_output, answer vs system prompt", lambda: guards.check_output([answer], [SYSTEM_PROMPT])),
    ]
    print(f"latency, {runs} calls each (microseconds):")
    total = 0.0
    for label, fn in cases:
        fn()
        median, p95 = _time(fn, runs)
        if "4 chunks" in label or "question" in label or "answer" in label:
            total += median
        print(f"  {label:<45} median {median:8.1f}   p95 {p95:8.1f}")
    print(f"  per grounded request (question + 4 chunks + answer): median sum {total:.1f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--pii", type=int, default=400, help="generated PII entities")
    parser.add_argument("--runs", type=int, default=2000, help="calls per latency case")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    injection_report()
    promptinject_report()
    pii_report(args.pii, args.seed)
    latency_report(args.runs)


if __name__ == "__main__":
    main()
