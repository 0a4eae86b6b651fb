"""The search agent: the environment's tools and their failure modes, the rewards, episodes outside training, and a
GRPO run with multi-turn tool rollouts end to end (`verirl train` -> accelerate -> TRL's tool loop)."""

import json
import os
import subprocess
import time

import pytest
import yaml
from PIL import Image

from tests.conftest import VERIRL
from verirl.errors import RecipeError
from verirl.search.corpus import Hit, load_corpus
from verirl.search.environment import SearchOptions, environment_class, environment_factory
from verirl.search.rewards import search_fidelity, search_reasoning, transcript_checks

TITLES = ["Eiffel Tower", "France", "Paris", "Germany", "Berlin", "Japan", "Tokyo", "Mount Fuji", "Italy", "Rome"]
Q_TOWER = "What is the capital of the country where the Eiffel Tower stands?"
Q_FLAG = "What is the capital of the country whose flag is shown?"


def train(recipe: dict, path) -> None:
    """`verirl train` on a recipe written to ``path``, through accelerate; it must succeed."""
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run([VERIRL, "train", str(path)], capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-4000:]


def call(name, **arguments):
    return {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": name, "arguments": arguments}}]}  # fmt: skip


def tool_call_text(name, **arguments):
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small corpus (the real passages of TITLES + 30 others), a flag image, and questions in the user format."""
    root = tmp_path_factory.mktemp("search")
    corpus = load_corpus()
    passages = [corpus.get(t) for t in TITLES] + corpus.passages[:30]
    (root / "corpus.jsonl").write_text(
        "".join(json.dumps({"title": p.title, "text": p.text}) + "\n" for p in passages)
    )
    from verirl.search.flags import load_flag

    Image.fromarray(load_flag("France")).resize((120, 80)).save(root / "flag.png")
    (root / "broken.png").write_bytes(b"not a png")
    questions = [
        {"question": Q_TOWER, "answers": ["Paris"], "evidence": ["Eiffel Tower", "France"]},
        {"question": Q_FLAG, "answers": ["Paris"], "image": "flag.png", "evidence": ["France"]},
    ]
    (root / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    return root


@pytest.fixture(scope="module")
def retriever(files):
    from verirl.search.service import open_retriever

    return open_retriever(None, str(files / "corpus.jsonl"), "flags")


def test_tools_return_observations_and_log_every_outcome(retriever, files):
    env = environment_factory(retriever, tools=("text_search", "image_search"), options=SearchOptions(max_calls=5))()
    env.reset(question=Q_FLAG, answers=["Paris"], evidence=["France"], query_image=str(files / "flag.png"))
    text = env.image_search()
    assert text.startswith("[1] France:"), text
    text = env.text_search("capital of France")
    assert "Paris" in text and len(text.splitlines()) == 3
    assert env.text_search("   ").startswith("error: the query is empty")
    env.text_search("capital of France")
    ep = env.episode
    assert [c.outcome for c in ep.calls] == ["ok", "ok", "error", "ok"]
    assert [c.repeated for c in ep.calls] == [False, False, False, True]
    assert ep.evidence[0].title == "France"  # the image's best match, then the text hits (unique titles)
    assert "Paris" in ep.returned_titles
    assert env.text_search("Tokyo").startswith("[1]")
    assert env.text_search("Berlin").startswith("error: the search budget (5 calls) is used up")
    assert ep.calls[-1].outcome == "budget"


def test_missing_corrupt_or_absent_images_and_failing_tools_are_observations(retriever, files):
    env = environment_class(("text_search", "image_search"))(retriever, None, SearchOptions(timeout_s=0.5))
    env.reset(question=Q_FLAG, query_image=str(files / "broken.png"))
    assert env.image_search().startswith("error:") and env.episode.calls[-1].outcome == "error"
    env.reset(question=Q_FLAG, query_image=str(files / "gone.png"))
    assert env.image_search().startswith("error:")
    env.reset(question=Q_TOWER)
    assert env.image_search() == "error: this question has no image"

    class Flaky:  # a retriever service that hangs, then one that fails: the tool answers within its timeout
        def text_search(self, query, k):
            if query == "hang":
                time.sleep(5)
            raise ConnectionError("retriever unreachable")

    env = environment_class(("text_search",))(Flaky(), None, SearchOptions(timeout_s=0.3))
    env.reset(question=Q_TOWER)
    start = time.monotonic()
    assert env.text_search("hang") == "error: text_search timed out after 0.3 s"
    assert time.monotonic() - start < 2
    assert env.text_search("x") == "error: retriever unreachable"
    assert [c.outcome for c in env.episode.calls] == ["timeout", "error"]


def test_environment_classes_expose_exactly_the_chosen_tools():
    import inspect

    def tools(cls):
        return sorted(
            n for n, _ in inspect.getmembers(cls, inspect.isfunction) if not n.startswith("_") and n != "reset"
        )

    assert tools(environment_class(("text_search",))) == ["text_search"]
    assert tools(environment_class(("text_search", "image_search"))) == ["image_search", "text_search"]
    with pytest.raises(ValueError, match="tools"):
        environment_class(("web_search",))


def test_reasoning_and_fidelity_rewards(retriever):
    envs = [environment_class(("text_search",))(retriever, None, SearchOptions()) for _ in range(4)]
    for env in envs:
        env.reset(question=Q_TOWER, answers=["Paris"], evidence=["Eiffel Tower", "France"])
    envs[0].text_search("Eiffel Tower")
    envs[0].text_search("capital of France")
    envs[1].text_search("Eiffel Tower")
    envs[1].text_search("Eiffel Tower")
    envs[3].text_search("Mount Fuji")
    final = {"role": "assistant", "content": "Eiffel Tower and France hold it."}
    tool = {"role": "tool", "name": "text_search", "content": "..."}
    completions = [
        [call("text_search", query="Eiffel Tower"), tool, call("text_search", query="capital of France"), tool, final],
        [call("text_search", query="Eiffel Tower"), tool, call("text_search", query="Eiffel Tower"), tool, final],
        [{"role": "assistant", "content": "<tool_call>{not json</tool_call>"}],  # malformed: TRL leaves it as text
        [call("text_search", query="Mount Fuji"), tool, call("text_search", query="Japan")],  # cut by the turn cap
    ]
    reasoning = search_reasoning(completions=completions, environments=envs)
    assert reasoning == [1.0, pytest.approx(0.875), 0.5, 0.5]  # malformed: no format, no success
    assert transcript_checks(completions[2], envs[2].episode)["malformed"] == 1
    fidelity = search_fidelity(completions=completions, environments=envs)
    assert fidelity[0] == 1.0  # both gold titles returned, "Paris" in the returned text
    assert 0.0 < fidelity[1] < 1.0 and fidelity[2] == 0.0 and fidelity[3] < fidelity[1]
    with pytest.raises(ValueError, match="environment"):
        search_fidelity(completions=completions, environments=None)


def test_calls_rejected_before_the_environment_count_as_failed(retriever):
    """A tool call with wrong arguments or an unknown tool never reaches the environment (TRL, and call_tools as TRL,
    answer it with an error message): it must cost as a failed call, not be a free action."""
    from verirl.search.agent import EpisodeResult, call_tools, summary

    cls = environment_class(("text_search", "image_search"))
    envs = [cls(retriever, None, SearchOptions()) for _ in range(2)]
    final = {"role": "assistant", "content": "Eiffel Tower and France hold it."}
    transcripts = []
    seconds = [call("text_search", query="France"), call("image_search", query="France")]
    for env, second in zip(envs, seconds, strict=True):
        env.reset(question=Q_TOWER, answers=["Paris"], evidence=["Eiffel Tower", "France"])
        first = call("text_search", query="Eiffel Tower")
        transcripts.append([first, *call_tools(env, first), second, *call_tools(env, second), final])
    assert "unexpected keyword argument 'query'" in transcripts[1][3]["content"]
    assert len(envs[1].episode.calls) == 1  # the rejected call left no trace in the environment
    checks = [transcript_checks(t, e.episode) for t, e in zip(transcripts, envs, strict=True)]
    assert [(c["calls"], c["rejected"], c["failed"], c["success"]) for c in checks] == [(2, 0, 0, 1.0),
                                                                                        (2, 1, 1, 0.5)]  # fmt: skip
    reasoning = search_reasoning(completions=transcripts, environments=envs)
    assert reasoning[0] == 1.0 and reasoning[1] == pytest.approx(0.875)
    fresh = cls(retriever, None, SearchOptions())
    fresh.reset(question=Q_TOWER, answers=["Paris"], evidence=["Eiffel Tower", "France"])
    unknown = call("web_search", query="France")
    assert transcript_checks([unknown, *call_tools(fresh, unknown), final], fresh.episode)["rejected"] == 1
    records = [EpisodeResult(e.episode, t).record() for t, e in zip(transcripts, envs, strict=True)]
    assert [(r["tool_calls"], r["invalid_calls"]) for r in records] == [(2, 0), (2, 1)]
    assert summary(records, 1.0)["invalid_call_rate"] == 0.25
    only_malformed = {**records[0], "tool_calls": 0, "malformed_calls": 2, "invalid_calls": 2}
    assert summary([only_malformed], 1.0)["invalid_call_rate"] == 1.0


def test_answerer_is_cached_per_question_and_evidence(tiny_model_dir):
    from verirl.search.answerer import build_answerer

    answerer = build_answerer("base", str(tiny_model_dir), max_new_tokens=3)
    ev = [Hit("France", "Paris is the capital.", 1.0)]
    first = answerer.answer([("q1", ev), ("q1", ev), ("q2", [])])
    again = answerer.answer([("q1", ev)])
    assert first[0] == first[1] == again[0]
    assert (answerer.calls, answerer.hits) == (2, 2)


def scripted_planner(root, name="planner"):
    """A tiny model whose turns are scripted: two searches then a hand-off for the tower question, image search then
    a text search for the flag question; as the answerer, it answers Paris when it sees evidence."""
    from verirl.testing import scripted_tool_model

    script = {
        "Evidence:": ["Paris"],  # the answerer's prompt, with evidence
        "user\n" + Q_TOWER: [tool_call_text("text_search", query="Eiffel Tower"),
                                tool_call_text("text_search", query="France capital"), "Eiffel Tower; France."],
        "user\n" + Q_FLAG: [tool_call_text("image_search"), tool_call_text("text_search", query="France capital"),
                          "France."],
        "": ["I do not know"],
    }  # fmt: skip
    return scripted_tool_model(root / name, script)


def test_episodes_outside_training_match_the_tool_protocol(files, retriever, tmp_path):
    from verirl.models import load_model
    from verirl.search.agent import Planner, run_baseline, run_episodes, summary
    from verirl.search.answerer import build_answerer
    from verirl.search.corpus import read_corpus_file
    from verirl.search.spec import planner_prompt, prepare_tokenizer
    from verirl.search.tasks import search_file

    model_dir = scripted_planner(tmp_path)
    model, tok, _ = load_model(str(model_dir), trust_remote_code=True)
    assert "Qwen2.5" in prepare_tokenizer(tok)
    answerer = build_answerer("base", str(model_dir), trust_remote_code=True)
    factory = environment_factory(retriever, answerer, ("text_search", "image_search"))
    rows, _ = search_file(train=str(files / "questions.jsonl"))
    rows.sort(key=lambda r: r["query_image"] is not None)
    prompts = [planner_prompt(r["question"], bool(r["query_image"])) for r in rows]
    results = run_episodes(Planner(model, tok), [factory() for _ in rows], rows, prompts, max_turns=3)
    records = [r.record() for r in results]
    assert [[t["query"] for t in r["turns"]] for r in records] == [["Eiffel Tower", "France capital"],
                                                                   [None, "France capital"]]  # fmt: skip
    assert records[1]["turns"][0]["titles"][0] == "France"
    assert [(r["answer"], r["correct"], r["all_evidence"]) for r in records] == [("Paris", True, True)] * 2
    assert records[0]["final_note"] == "Eiffel Tower; France."
    line = summary(records, 1.0)
    assert (line["accuracy"], line["retrieval_fidelity"], line["mean_tool_calls"]) == (1.0, 1.0, 2.0)

    corpus = read_corpus_file(files / "corpus.jsonl")
    none = [r.record() for r in run_baseline("none", factory(), rows, corpus)]
    oracle = [r.record() for r in run_baseline("oracle", factory(), rows, corpus)]
    rag = [r.record() for r in run_baseline("naive-rag", factory(), rows, corpus)]
    assert [r["answer"] for r in none] == ["I do not know"] * 2
    assert all(r["all_evidence"] for r in oracle)
    assert rag[1]["turns"][0]["tool"] == "image_search" and "France" in rag[1]["turns"][1]["query"]


def test_grpo_trains_a_planner_with_multi_turn_tool_rollouts(files, tmp_path):
    """`verirl train` on a search recipe: TRL's tool loop runs the scripted turns, tool results are masked out of
    the loss, the search rewards are logged separately, and the held-out evaluation runs whole episodes."""
    model_dir = scripted_planner(tmp_path)
    recipe = {
        "trainer": "grpo",
        "model": {"name": str(model_dir), "trust_remote_code": True},
        "data": {"builtin": "search-file", "train": str(files / "questions.jsonl"),
                 "eval": str(files / "questions.jsonl")},
        "environment": {"name": "search", "corpus": str(files / "corpus.jsonl"), "max_turns": 3,
                        "max_result_chars": 60},
        "rewards": [{"name": "search_accuracy", "weight": 1.0}, {"name": "search_reasoning", "weight": 0.2},
                    {"name": "search_fidelity", "weight": 0.2}],
        "args": {"max_steps": 1, "num_generations": 2, "per_device_train_batch_size": 4, "max_completion_length": 2048,
                 "logging_steps": 1, "save_strategy": "no", "bf16": False, "report_to": "none", "seed": 0,
                 "log_completions": False},
        "eval": {"batch_size": 4},
        "output_dir": str(tmp_path / "out"),
    }  # fmt: skip
    train(recipe, tmp_path / "recipe.yaml")
    out = tmp_path / "out"
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    step = next(r for r in records if "loss" in r)
    assert step["tools/call_frequency"] == 2.0 and step["tools/failure_frequency"] == 0.0
    assert step["rewards/search_accuracy/mean"] == 1.0
    assert step["rewards/search_reasoning/mean"] == 1.0
    assert step["rewards/search_fidelity/mean"] == 1.0
    assert step["search/invalid_call_rate"] == 0.0
    assert step["search/rollout_seconds"] > step["search/tool_seconds"] > 0 and step["search/answerer_seconds"] > 0
    # tool results are masked out of the loss: TRL counts only tokens with tool_mask = 1, the scripted turns' own
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    script = json.loads((model_dir / "script.json").read_text())
    own = [
        sum(len(tok(t, add_special_tokens=False)["input_ids"]) + 1 for t in script["user\n" + q])
        for q in (Q_TOWER, Q_FLAG)
    ]
    assert step["completions/mean_length"] == sum(own) / 2
    results = json.loads((out / "eval_results.json").read_text())
    assert results["before"]["accuracy"] == 1.0 and results["after"]["retrieval_fidelity"] == 1.0
    assert results["train"]["answerer"]["answers_generated"] == 2  # 4 rollouts, 2 distinct (question, evidence)


SEARCH_RECIPE = {
    "trainer": "grpo",
    "model": "smollm2-135m-instruct",
    "data": {"builtin": "search-2hop", "n_train": 8, "n_eval": 4},
    "environment": {"name": "search"},
    "rewards": ["search_accuracy", "search_fidelity"],
    "args": {"num_generations": 2, "per_device_train_batch_size": 2},
}


@pytest.mark.parametrize(
    "change,where,message",
    [
        ({"environment": None}, "rewards.0.name", "needs an `environment: search` section"),
        ({"environment": {"name": "web"}}, "environment.name", "expected one of: search"),
        ({"environment": {"name": "search", "tools": ["web_search"]}}, "environment.tools", "text_search"),
        ({"environment": {"name": "search", "tools": []}}, "environment.tools", "non-empty"),
        ({"environment": {"name": "search", "max_turns": 0}}, "environment.max_turns", "positive"),
        ({"environment": {"name": "search", "retriever": "localhost:8900"}}, "environment.retriever", "http"),
        ({"environment": {"name": "search", "corpus": "nope.jsonl"}}, "environment.corpus", "wiki-vital or a JSONL"),
        ({"environment": {"tools": ["text_search"]}}, "environment.tools", "set environment.name"),
        ({"environment": {"name": "search", "answerer": " "}}, "environment.answerer", "a URL"),
        ({"environment": {"name": "search", "top_k": 1e9}}, "environment.top_k", ""),
        ({"environment": {"name": "search", "typo": 1}}, "environment.typo", ""),
        ({"args": {"max_tool_calling_iterations": 2}}, "args.max_tool_calling_iterations", "environment.max_turns"),
        ({"data": {"builtin": "search-2hop", "chat": False}}, "data.chat", "chat prompts"),
        ({"data": {"builtin": "search-file", "train": "missing.jsonl"}}, "data", "missing.jsonl"),
        ({"data": {"builtin": "search-mix", "image_share": 2}}, "data", "image_share"),
    ],
)
def test_search_recipes_fail_in_one_line_naming_the_field(change, where, message):
    from verirl.recipes import validate

    data = {**SEARCH_RECIPE, **change}
    if change.get("args"):
        data["args"] = {**SEARCH_RECIPE["args"], **change["args"]}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(RecipeError) as exc:
        validate(data, "r.yaml")
    text = str(exc.value)
    assert "\n" not in text and f"r.yaml: {where}" in text and message in text, text


def test_a_search_recipe_validates_and_sets_the_turn_cap():
    from verirl.recipes import validate

    recipe = validate(dict(SEARCH_RECIPE), "r.yaml")
    assert recipe.section("environment").enabled
    assert recipe.trainer_args["max_tool_calling_iterations"] == 3


def test_agent_cli_ask_and_eval_print_json(files, tmp_path, capsys):
    from verirl.cli import main

    model_dir = scripted_planner(tmp_path)
    common = ["--model", str(model_dir), "--trust-remote-code", "--corpus", str(files / "corpus.jsonl")]
    assert main(["agent", "ask", *common, "--image", str(files / "flag.png"), Q_FLAG]) == 0
    asked = json.loads(capsys.readouterr().out)
    assert asked["answer"] == "Paris" and asked["turns"][0]["tool"] == "image_search"
    assert main(["agent", "eval", *common, "--data", str(files / "questions.jsonl")]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 3 and lines[-1]["summary"] and lines[-1]["accuracy"] == 1.0
    assert lines[-1]["retrieval_fidelity"] == 1.0 and lines[-1]["mean_tool_calls"] == 2.0
    assert main(["agent", "eval", *common, "--data", str(files / "questions.jsonl"), "--baseline", "oracle"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["retrieval_fidelity"] == 1.0


def test_agent_eval_keeps_the_unsolved_questions_as_a_question_file(files, tmp_path, capsys):
    from verirl.cli import main
    from verirl.search.questions import read_questions

    model_dir = scripted_planner(tmp_path)
    common = ["--trust-remote-code", "--corpus", str(files / "corpus.jsonl"), "--data", str(files / "questions.jsonl")]
    # the answerer alone answers "I do not know": both questions unsolved, by accuracy and by fidelity
    hard = tmp_path / "out" / "hard.jsonl"
    argv = ["agent", "eval", "--baseline", "none", "--answerer", str(model_dir), *common, "--keep-unsolved", str(hard)]
    assert main([*argv, "--unsolved-by", "fidelity"]) == 0
    kept = read_questions(hard)
    assert [q.question for q in kept] == [Q_TOWER, Q_FLAG] and kept[0].evidence == ("Eiffel Tower", "France")
    assert kept[1].image == str((files / "flag.png").resolve()) and kept[1].answers == ("Paris",)
    assert "2 of 2 questions unsolved (fidelity)" in capsys.readouterr().err
    # the file is never overwritten
    assert main(argv) == 2
    assert "--keep-unsolved:" in capsys.readouterr().err and len(read_questions(hard)) == 2
    wrong = tmp_path / "wrong.jsonl"
    assert main([*argv[:-1], str(wrong)]) == 0 and len(read_questions(wrong)) == 2  # by accuracy (the default)
    # the scripted planner solves both: nothing to keep, no file
    solved = tmp_path / "solved.jsonl"
    assert main(["agent", "eval", "--model", str(model_dir), *common, "--keep-unsolved", str(solved)]) == 0
    assert not solved.exists() and "every question was solved" in capsys.readouterr().err


def test_agent_eval_reads_a_builtin_tasks_training_split():
    from verirl.cli.agent import _rows
    from verirl.search.questions import builtin_questions

    train = {q.question for q in builtin_questions("search-2hop", "train")}
    rows = _rows("search-2hop:train", 50)
    assert len(rows) == 50 and {r["question"] for r in rows} <= train
    assert not {r["question"] for r in _rows("search-2hop", 50)} & train
    assert [r["question"] for r in _rows("search-2hop:test", 5)] == [r["question"] for r in _rows("search-2hop", 5)]


@pytest.mark.parametrize(
    "argv,message",
    [
        (["agent", "ask", "q"], "--model: required"),
        (["agent", "eval", "--model", "m", "--data", "search-2hop:dev"], "--data: unknown split 'dev'"),
        (["agent", "ask", "--model", "m", "--tools", "web", "q"], "--tools"),
        (["agent", "ask", "--model", "m", "--image", "nope.png", "q"], "--image: no such file"),
        (["agent", "eval", "--model", "m", "--data", "nope.jsonl"], "nope.jsonl"),
        (["agent", "eval", "--model", "m", "--data", "search-2hop", "--limit", "0"], "--limit"),
        (["agent", "eval", "--model", "m", "--data", "search-2hop", "--max-turns", "0"], "--max-turns"),
        # checked before the retriever's index is built (minutes on the full corpus)
        (["agent", "ask", "--model", "/no/such/planner", "q"], "--model: model '/no/such/planner': no such directory"),
        (
            ["agent", "eval", "--baseline", "naive-rag", "--answerer", "./no-answerer", "--data", "search-2hop"],
            "--answerer: model './no-answerer'",
        ),
    ],
)
def test_agent_cli_bad_input_is_one_line(argv, message, capsys):
    from verirl.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("verirl: error:") and message in err and "\n" not in err, err


def test_oracle_trajectories_use_the_real_tools_and_sft_trains_only_assistant_tokens(files, retriever, tmp_path):
    from transformers import AutoTokenizer

    from verirl.rl.sft import tokenize_conversations
    from verirl.search.oracle import oracle_rows
    from verirl.search.spec import prepare_tokenizer
    from verirl.search.tasks import search_file

    env = environment_class(("text_search", "image_search"))(retriever, None, SearchOptions())
    rows, _ = search_file(train=str(files / "questions.jsonl"))
    unreachable = {"question": "Who painted it?", "answers": ["x"], "evidence": ["Eiffel Tower", "Mona Lisa"],
                   "query_image": None}  # fmt: skip
    made = oracle_rows(env, [*rows, unreachable])
    assert len(made) == 2  # the third's hop 2 is not in the corpus: dropped
    chats = {r["question"]: json.loads(r["conversation"]) for r in made}
    tower = chats[Q_TOWER]
    assert [m["role"] for m in tower] == ["system", "user", "assistant", "tool", "assistant", "tool", "assistant"]
    assert tower[2]["tool_calls"][0]["function"] == {"name": "text_search", "arguments": {"query": "Eiffel Tower"}}
    assert tower[3]["content"].startswith("[1] Eiffel Tower:")
    flag = chats[Q_FLAG]
    assert flag[2]["tool_calls"][0]["function"] == {"name": "image_search", "arguments": {}}
    assert flag[-1]["content"] == "The answer is in: France."

    from datasets import Dataset

    tok = AutoTokenizer.from_pretrained(scripted_planner(tmp_path))
    prepare_tokenizer(tok)
    encoded = tokenize_conversations(Dataset.from_list(made), tok)
    row = encoded[1] if "image_search" in tok.decode(encoded[1]["input_ids"]) else encoded[0]
    trained = tok.decode([i for i, m in zip(row["input_ids"], row["assistant_masks"], strict=True) if m])
    # the tool call without arguments stays {} (nested columns would turn it into {"query": null}); tool results,
    # the system prompt and the question are never trained on
    assert '"arguments": {}' in trained and "null" not in trained
    assert "France:" not in trained and "search planner" not in trained and "flag is shown" not in trained
    assert trained.count("<|im_end|>") == 2


def test_sft_trainer_runs_the_cold_start_recipe(files, tmp_path):
    model_dir = scripted_planner(tmp_path)
    recipe = {
        "trainer": "sft",
        "model": {"name": str(model_dir), "trust_remote_code": True},
        "data": {"builtin": "search-oracle", "questions": str(files / "questions.jsonl"),
                 "corpus": str(files / "corpus.jsonl")},
        "args": {"max_steps": 2, "per_device_train_batch_size": 2, "learning_rate": 1e-3, "logging_steps": 1,
                 "save_strategy": "no", "bf16": False, "report_to": "none", "max_length": 4096},
        "output_dir": str(tmp_path / "sft"),
    }  # fmt: skip
    train(recipe, tmp_path / "sft.yaml")
    records = [json.loads(line) for line in (tmp_path / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2]
    saved = (tmp_path / "sft" / "chat_template.jinja").read_text()
    assert "<tool_call>" in saved  # the planner keeps the tool-capable template for GRPO


def test_an_unreachable_answerer_server_is_one_line_naming_the_url():
    import socket

    from verirl.errors import VerirlError
    from verirl.search.answerer import build_answerer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(VerirlError, match=rf"^answerer http://127.0.0.1:{port}/v1/models: .*refused") as info:
        build_answerer(f"http://127.0.0.1:{port}", "unused")
    assert "\n" not in str(info.value)


def test_an_unsolved_list_never_replaces_a_file_that_appeared_during_the_run(tmp_path, capsys):
    from verirl.cli.agent import _write_unsolved

    rows = [{"question": "q1", "answers": ["a"], "evidence": [], "query_image": None}]
    records = [{"correct": False, "all_evidence": None}]
    target = tmp_path / "hard.jsonl"
    target.write_text("precious\n")
    _write_unsolved(target, rows, records, "accuracy")
    assert target.read_text() == "precious\n"
    (beside,) = [p for p in tmp_path.iterdir() if p != target]
    assert json.loads(beside.read_text()) == {"question": "q1", "answers": ["a"], "evidence": []}
    assert str(beside) in capsys.readouterr().err
