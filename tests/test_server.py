"""`assistant serve` end to end: a real server process on loopback, real clients nobody here wrote.

The `openai` SDK, the `llm` CLI (through its extra-openai-models.yaml) and curl talk to the server
over HTTP; the answers land in the real SQLite history; the README's snippets are run as written
(with the test server's port).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
from server_helpers import stream_chunks

from assistant.chat.session import resumable
from assistant.storage.store import export_conversation
from bench.serve_process import ServeProcess

ROOT = Path(__file__).resolve().parent.parent
MODEL = "smollm2-135m"
QUESTION = [{"role": "user", "content": "Name three primary colours."}]
# a greedy answer that runs past 400 tokens: a sampled "long story" may end after a few, before a test acts on it
LONG = "Write a long essay about the history of Rome."


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """One server (history on, no API key) shared by the tests that do not need other options."""
    with ServeProcess(tmp_path_factory.mktemp("serve-home")) as process:
        yield process


def client(server: ServeProcess, key: str = "not-needed") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key=key, max_retries=0, timeout=120)


def store_of(server: ServeProcess):  # noqa: ANN201
    from assistant.storage.store import Store

    return Store(server.home / "assistant.db")


def api_answers(server: ServeProcess) -> list[dict]:
    return [m for m in store_of(server).iter_messages() if m.role == "assistant"]


def readme_snippets() -> dict[str, list[str]]:
    """The code blocks of the README's "Use it from other tools" section, by language."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Use it from other tools", 1)[1].split("\n## ", 1)[0]
    blocks: dict[str, list[str]] = {}
    for language, body in re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S):
        blocks.setdefault(language, []).append(body)
    return blocks


def on_port(snippet: str, server: ServeProcess) -> str:
    return snippet.replace("127.0.0.1:8181", f"127.0.0.1:{server.port}")


# -- the README's snippets, as written
def test_readme_openai_snippet_runs(server: ServeProcess) -> None:
    code = on_port(readme_snippets()["python"][0], server)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.strip()) > 5


def test_readme_llm_snippet_runs(server: ServeProcess, tmp_path: Path) -> None:
    """llm's three lines: an answer (streamed), a follow-up with -c (llm resends the chat), and --schema."""
    snippets = readme_snippets()
    (tmp_path / "extra-openai-models.yaml").write_text(on_port(snippets["yaml"][0], server))
    commands = [line for block in snippets["sh"] for line in block.splitlines() if line.startswith("llm ")]
    env = os.environ | {"LLM_USER_PATH": str(tmp_path)}
    llm = str(Path(sys.executable).parent / "llm")
    outputs = []
    for command in commands:
        out = subprocess.run(
            command.replace("llm ", f"{llm} ", 1), shell=True, capture_output=True, text=True, timeout=120, env=env
        )
        assert out.returncode == 0, (command, out.stderr)
        outputs.append(out.stdout.strip())
    first, follow_up, person = outputs
    assert len(first) > 5 and follow_up
    store = store_of(server)
    answer = next(m for m in api_answers(server) if m["content"].strip() == first)  # llm's answer is in the history
    assert json.loads(answer["route"])["via"] == "API" and answer["model"] == MODEL
    chat = [(m["role"], m["content"].strip()) for m in store.messages(answer["conversation_id"])]
    assert chat[:3] == [
        ("user", "Name three primary colours."),
        ("assistant", first),
        ("user", "Which one is the warmest?"),
    ]  # -c continued the same stored conversation
    assert chat[3] == ("assistant", follow_up)
    parsed = json.loads(person)  # --schema: a response_format json_schema the grammar enforced
    assert set(parsed) == {"name", "age"} and isinstance(parsed["age"], int) and isinstance(parsed["name"], str)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_readme_curl_snippet_runs(server: ServeProcess) -> None:
    block = next(b for b in readme_snippets()["sh"] if "curl" in b)
    out = subprocess.run(on_port(block, server), shell=True, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["object"] == "chat.completion" and body["model"] == MODEL
    assert body["choices"][0]["message"]["content"] and body["usage"]["completion_tokens"] > 0


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_streams_server_sent_events(server: ServeProcess) -> None:
    body = json.dumps(
        {
            "model": MODEL,
            "messages": QUESTION,
            "max_tokens": 16,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    out = subprocess.run(
        ["curl", "-sN", f"{server.url}/chat/completions", "-H", "Content-Type: application/json", "-d", body],
        capture_output=True,
        text=True,
        timeout=120,
    )
    events = [line.removeprefix("data: ") for line in out.stdout.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1]
    tokens = chunks[-1]["usage"]["completion_tokens"]
    assert text and (finish, tokens == 16) in (("length", True), ("stop", False))
    timings = next(c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"])["timings"]
    assert timings["predicted_n"] == tokens and 0 < timings["session_ttft_ms"] < 60_000


# -- the openai SDK
def test_openai_sdk_whole_and_streamed_answers_with_usage(server: ServeProcess) -> None:
    sdk = client(server)
    reply = sdk.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=24, temperature=0)
    assert reply.choices[0].message.content and reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage.completion_tokens > 0 and reply.usage.prompt_tokens > 5
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    stream = sdk.chat.completions.create(
        model=MODEL,
        messages=QUESTION,
        max_tokens=24,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == reply.choices[0].message.content  # greedy: the same answer both ways
    assert chunks[-1].usage.completion_tokens == reply.usage.completion_tokens


def test_openai_sdk_errors_are_its_exception_types(server: ServeProcess) -> None:
    sdk = client(server)
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        sdk.chat.completions.create(model="no-such-model", messages=QUESTION)
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        sdk.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=10**6)
    with pytest.raises(openai.BadRequestError, match="temperature"):
        sdk.chat.completions.create(model=MODEL, messages=QUESTION, temperature="hot")  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError, match="last message"):
        sdk.chat.completions.create(model=MODEL, messages=[{"role": "assistant", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="messages"):
        sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": {"bad": 1}}])


def test_malformed_requests_get_openai_style_json_without_traces(server: ServeProcess) -> None:
    url = f"{server.url}/chat/completions"
    cases = [
        (b"{not json", 400),
        (b"[1, 2]", 400),
        (b'{"model": 3, "messages": []}', 400),
        (json.dumps({"model": MODEL, "messages": QUESTION, "stop": [1]}).encode(), 400),
        (json.dumps({"model": MODEL, "messages": QUESTION, "n": 3}).encode(), 400),
        (json.dumps({"model": "../../etc/passwd", "messages": QUESTION}).encode(), 404),
    ]
    for body, status in cases:
        response = httpx.post(url, content=body, headers={"Content-Type": "application/json"}, timeout=30)
        assert response.status_code == status, body
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"]
        assert "Traceback" not in response.text and not re.search(r"/(tmp|home|root|usr|work)/|\.py\b", response.text)
    assert httpx.get(f"{server.url}/nowhere", timeout=30).json()["error"]["message"]
    assert httpx.post(url, content=b"{}", timeout=30).status_code == 415  # not JSON: a browser's simple request
    assert not any("Traceback" in line for line in server.stderr)


def test_json_schema_response_format_is_enforced(server: ServeProcess) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    reply = client(server).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Invent a person."}],
        max_tokens=200,
        temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}},
    )
    content = reply.choices[0].message.content
    assert reply.choices[0].finish_reason == "stop", f"cut at the token limit: {content!r}"
    person = json.loads(content)
    assert set(person) == {"name", "age"} and isinstance(person["age"], int) and isinstance(person["name"], str)


def test_openai_sdk_parse_and_json_object_mode(server: ServeProcess) -> None:
    from pydantic import BaseModel

    class City(BaseModel):
        name: str
        country: str
        population: int

    sdk = client(server)
    ask = [{"role": "user", "content": "Describe the city of Paris as JSON."}]
    reply = sdk.chat.completions.parse(model=MODEL, messages=ask, max_tokens=80, temperature=0, response_format=City)
    assert reply.choices[0].finish_reason == "stop"
    assert isinstance(reply.choices[0].message.parsed, City)  # the SDK's own strict schema, followed
    colour = [{"role": "user", "content": 'Reply with a JSON object with one key, "colour", naming a colour.'}]
    chunks = stream_chunks(sdk, colour, 60, response_format={"type": "json_object"})
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].choices[0].finish_reason == "stop", text
    assert isinstance(json.loads(text), dict)


def test_an_answer_outside_the_schema_is_an_error_not_passed_on(server: ServeProcess) -> None:
    """Bounds the grammar cannot hold are checked on the whole answer, as `assistant ask --schema` checks it."""
    schema = {
        "type": "object",
        "properties": {"year": {"type": "integer", "minimum": 3000, "maximum": 3001}},
        "required": ["year"],
    }
    ask = dict(
        model=MODEL,
        messages=[{"role": "user", "content": "In which year did the Berlin wall fall?"}],
        max_tokens=60,
        temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "year", "schema": schema}},
    )
    with pytest.raises(openai.InternalServerError, match=r"\$\.year should be at least 3000") as refused:
        client(server).chat.completions.create(**ask)
    assert refused.value.code == "response_format_mismatch"
    with pytest.raises(openai.APIError, match=r"\$\.year should be at least 3000"):  # streamed: the last event
        list(client(server).chat.completions.create(stream=True, **ask))
    assert any("response_format: the answer does not match" in line for line in server.stderr)


def test_stop_seed_and_top_p(server: ServeProcess) -> None:
    sdk = client(server)
    ask = dict(
        model=MODEL,
        messages=[{"role": "user", "content": "Write a short poem about the sea."}],
        max_tokens=24,
        temperature=1.2,
        top_p=0.9,
    )
    first = sdk.chat.completions.create(seed=1234, **ask).choices[0].message.content
    again = sdk.chat.completions.create(seed=1234, **ask).choices[0].message.content
    assert first == again  # the same seed samples the same answer
    greedy = sdk.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=40, temperature=0)
    text = greedy.choices[0].message.content
    word = next(w for w in text.split() if len(w) > 3)
    stopped = sdk.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=40, temperature=0, stop=[word])
    assert stopped.choices[0].message.content == text[: text.index(word)]
    assert stopped.choices[0].finish_reason == "stop"


def test_resending_client_continues_one_conversation_with_kv_reuse(server: ServeProcess, smollm_path: Path) -> None:
    from assistant.chat.persona import count_tokens

    sdk = client(server)
    messages = [{"role": "system", "content": "You are terse."}]
    cached = []
    questions = ("What is a cat?", "And a dog?", "Which one barks?", "And a cow?", "Which one gives milk?")
    for question in questions:
        messages.append({"role": "user", "content": question})
        reply = sdk.chat.completions.create(model=MODEL, messages=messages, max_tokens=16, temperature=0)
        messages.append({"role": "assistant", "content": reply.choices[0].message.content})
        cached.append((reply.usage.prompt_tokens, reply.usage.prompt_tokens_details.cached_tokens))
        assert reply.model_extra["timings"]["prompt_n"] == cached[-1][0] - cached[-1][1]
    for turn in range(1, len(questions)):
        assert cached[turn][1] >= cached[turn - 1][0]  # all the earlier prompt was cached...
        new_tokens = count_tokens(smollm_path, questions[turn])  # ...and only about the new message evaluated:
        evaluated = cached[turn][0] - cached[turn][1]  # the question, its chat-template markers, the last answer's end
        assert evaluated <= new_tokens + 12, (turn, cached)
    assert cached[-1][0] > 5 * (cached[-1][0] - cached[-1][1])  # turn 5 evaluates a fifth of its prompt or less
    store = store_of(server)
    conversation = next(c for c in store.conversations() if c["title"] == "What is a cat?")
    stored = store.messages(conversation["id"])
    assert conversation["system"] == "You are terse."
    assert [(m["role"], m["content"]) for m in stored] == [(m["role"], m["content"]) for m in messages[1:]]
    answers = [m for m in stored if m["role"] == "assistant"]
    assert all(m["model"] == MODEL and json.loads(m["route"])["via"] == "API" for m in answers)
    out = subprocess.run(
        [sys.executable, "-m", "assistant", "history", "show", str(conversation["id"])],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ | {"ASSISTANT_HOME": str(server.home)},
    )
    assert "via API" in out.stdout


def test_a_client_sending_another_conversation_gets_a_new_one(server: ServeProcess) -> None:
    sdk = client(server)
    earlier = [
        {"role": "user", "content": "Remember the number 42."},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "What number?"},
    ]
    sdk.chat.completions.create(model=MODEL, messages=earlier, max_tokens=8, temperature=0)
    store = store_of(server)
    conversation = next(c for c in store.conversations() if c["title"] == "Remember the number 42.")
    stored = [(m["role"], m["content"]) for m in store.messages(conversation["id"])]
    assert stored[:3] == [(m["role"], m["content"]) for m in earlier] and stored[3][0] == "assistant"


@pytest.mark.timeout(300)
def test_eight_concurrent_clients_are_all_answered_in_full(server: ServeProcess) -> None:
    before = server.health()["finished"]
    results: dict[int, tuple[str, str, int]] = {}
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            messages = [{"role": "user", "content": f"Client {i}: say something about the number {i}."}]
            if i % 2:
                chunks = list(
                    client(server).chat.completions.create(
                        model=MODEL,
                        messages=messages,
                        max_tokens=20,
                        temperature=0,
                        stream=True,
                        stream_options={"include_usage": True},
                    )
                )
                text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
                finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
                results[i] = (text, finish, chunks[-1].usage.completion_tokens)
            else:
                reply = client(server).chat.completions.create(
                    model=MODEL, messages=messages, max_tokens=20, temperature=0
                )
                results[i] = (
                    reply.choices[0].message.content,
                    reply.choices[0].finish_reason,
                    reply.usage.completion_tokens,
                )
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert not errors and len(results) == 8
    for text, finish, tokens in results.values():
        assert text and finish in ("stop", "length") and (finish == "stop" or tokens == 20)
    assert server.health()["finished"] - before == 8
    stored = {m["content"] for m in api_answers(server)}
    assert all(text in stored for text, _, _ in results.values())


@pytest.mark.timeout(300)
def test_a_killed_client_frees_the_engine_within_a_token(server: ServeProcess) -> None:
    before, logged = server.health(), len(server.stderr)
    script = (
        "import sys, openai\n"
        f"sdk = openai.OpenAI(base_url={server.url!r}, api_key='x', max_retries=0)\n"
        f"for c in sdk.chat.completions.create(model={MODEL!r}, messages=[{{'role': 'user', 'content': "
        f"{LONG!r}}}], max_tokens=1500, temperature=0, stream=True):\n"
        "    if c.choices and c.choices[0].delta.content:\n"
        "        print('token', flush=True)\n"
    )
    reader = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert reader.stdout is not None
    for _ in range(10):  # ten tokens arrived: it is mid-stream
        assert reader.stdout.readline() == "token\n"
    reader.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    reader.wait(timeout=10)
    health = server.wait_health(lambda h: h["finished"] > before["finished"], "the killed client's request to end")
    freed_s = time.monotonic() - killed
    assert not health["busy"]
    assert freed_s < 10.0, f"the engine was freed {freed_s:.2f} s after the client was killed"  # a busy machine
    line = server.wait_line("a client went away", since=logged)
    assert int(re.search(r"stopped (\d+) token", line).group(1)) <= 1
    answer = max(api_answers(server), key=lambda m: m["id"])
    assert answer["content"] and answer["finish_reason"] == "cancelled"
    assert resumable(answer)  # marked incomplete: the chat offers to continue it, `history show` says so
    assert "· stopped (incomplete)" in export_conversation(store_of(server), answer.conversation_id, "md")
    assert 10 <= answer["completion_tokens"] < 1500
    assert not any("Traceback" in line or "Exception" in line for line in server.stderr)


@pytest.mark.timeout(300)
def test_a_full_queue_answers_429_with_retry_after(tmp_path: Path) -> None:
    with ServeProcess(tmp_path / "home", "--queue", "1") as server:
        before = server.health()
        story = [{"role": "user", "content": LONG}]
        running = client(server).chat.completions.create(
            model=MODEL, messages=story, max_tokens=1500, temperature=0, stream=True
        )
        next(iter(running))
        server.wait_health(lambda h: h["started"] > before["started"], "the first request to start")
        short = {"model": MODEL, "messages": QUESTION, "max_tokens": 8, "stream": True}
        with (
            httpx.Client(timeout=120) as waiting,
            waiting.stream("POST", f"{server.url}/chat/completions", json=short) as queued,
        ):
            server.wait_health(lambda h: h["queued"] == 1, "the second request to queue")
            with pytest.raises(openai.RateLimitError) as refused:
                client(server).chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=8)
            assert int(refused.value.response.headers["Retry-After"]) >= 1
            running.close()  # the first client leaves: the waiting one is served, in full
            events = [line for line in queued.iter_lines() if line.startswith("data: ")]
        assert queued.status_code == 200 and events[-1] == "data: [DONE]"
        assert json.loads(events[-2][6:])["choices"][0]["finish_reason"] in ("stop", "length")
        health = server.wait_health(lambda h: h["finished"] >= before["finished"] + 2, "both requests to end")
        assert health["started"] == before["started"] + 2  # the refused one never reached the engine


def test_api_key_and_body_limit(tmp_path: Path) -> None:
    env = {"SERVE_TEST_KEY": "s3cret-key"}
    with ServeProcess(tmp_path / "home", "--api-key-env", "SERVE_TEST_KEY", "--max-body", "4096", env=env) as server:
        with pytest.raises(openai.AuthenticationError):
            client(server, "wrong-key").models.list()
        with pytest.raises(openai.AuthenticationError):
            client(server, "s3cret-kez").chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=4)
        assert httpx.get(f"{server.url}/models", timeout=30).status_code == 401
        good = client(server, "s3cret-key")
        assert MODEL in [m.id for m in good.models.list()]
        big = [{"role": "user", "content": "x" * 5000}]
        with pytest.raises(openai.APIStatusError) as too_big:
            good.chat.completions.create(model=MODEL, messages=big, max_tokens=4)
        assert too_big.value.status_code == 413 and "4096 bytes" in too_big.value.message
        reply = good.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=4)
        assert reply.usage.completion_tokens > 0


def test_without_a_key_other_hosts_and_pages_are_refused(server: ServeProcess) -> None:
    for headers in ({"Host": "attacker.example"}, {"Origin": "http://attacker.example"}, {"Host": "[::1"}):
        response = httpx.get(f"{server.url}/models", headers=headers, timeout=30)
        assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
    assert httpx.get(f"{server.url}/models", headers={"Origin": "http://localhost:3000"}, timeout=30).status_code == 200


def test_a_reachable_address_without_a_key_is_refused(tmp_path: Path) -> None:
    env = os.environ | {"ASSISTANT_HOME": str(tmp_path)}
    for host in ("0.0.0.0", "::"):
        out = subprocess.run(
            [sys.executable, "-m", "assistant", "serve", "--host", host, "--port", "0"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert out.returncode == 1 and out.stdout == ""
        assert out.stderr.count("\n") == 1 and "without an API key" in out.stderr
    for args, says in (
        (["--api-key-env", "NO_SUCH_VAR_SET"], "NO_SUCH_VAR_SET"),
        (["--model", "nope"], "--model nope"),
        (["--queue", "-1"], "--queue -1"),
        (["--port", "70000"], "--port 70000"),
    ):
        out = subprocess.run(
            [sys.executable, "-m", "assistant", "serve", "--port", "0", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert out.returncode == 1 and says in out.stderr and out.stderr.count("\n") == 1, out.stderr


def test_a_busy_port_is_one_clear_line(server: ServeProcess, tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "assistant", "serve", "--port", str(server.port)],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ | {"ASSISTANT_HOME": str(tmp_path)},
    )
    assert out.returncode == 1 and "cannot listen" in out.stderr and out.stderr.count("\n") == 1


@pytest.mark.timeout(300)
def test_models_load_on_first_use_swap_show_up_live_and_unload_when_idle(tmp_path: Path, smollm_path: Path) -> None:
    home = tmp_path / "home"
    with ServeProcess(home, "--idle-unload", "1") as server:
        assert server.health()["model"] is None  # nothing loaded before the first request
        names = [m.id for m in client(server).models.list()]
        assert "smol-copy" not in names
        env = os.environ | {"ASSISTANT_HOME": str(home)}
        subprocess.run(
            [sys.executable, "-m", "assistant", "models", "import", str(smollm_path), "--name", "smol-copy", "--link"],
            check=True,
            capture_output=True,
            timeout=60,
            env=env,
        )
        assert "smol-copy" in [m.id for m in client(server).models.list()]  # no restart needed
        sdk = client(server)
        assert sdk.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=4).usage.completion_tokens
        assert sdk.chat.completions.create(model="smol-copy", messages=QUESTION, max_tokens=4).model == "smol-copy"
        assert server.health()["model"] == "smol-copy"
        assert any("swapped in smol-copy" in line for line in server.stderr)
        health = server.wait_health(lambda h: h["unloads"] >= 1, "the idle model to unload", timeout=30)
        assert health["model"] is None
        reply = sdk.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=4)  # loads again
        assert reply.usage.completion_tokens > 0


def test_no_history_stores_nothing(tmp_path: Path) -> None:
    with ServeProcess(tmp_path / "home", "--no-history", "--model", MODEL) as server:
        assert server.health()["model"] == MODEL  # --model loads it before the server listens
        sdk = client(server)
        messages = list(QUESTION)
        for _ in range(2):
            reply = sdk.chat.completions.create(model=MODEL, messages=messages, max_tokens=8, temperature=0)
            messages += [
                {"role": "assistant", "content": reply.choices[0].message.content},
                {"role": "user", "content": "Go on."},
            ]
        assert reply.usage.prompt_tokens_details.cached_tokens > 0  # still one conversation in memory
        assert store_of(server).conversations() == []


def test_personas_are_served_by_name_and_show_up_live(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = os.environ | {"ASSISTANT_HOME": str(home)}
    system = tmp_path / "pirate.txt"
    system.write_text("You are a pirate. Answer like one.")
    with ServeProcess(home) as server:
        assert "pirate" not in [m.id for m in client(server).models.list()]
        subprocess.run(
            [sys.executable, "-m", "assistant", "persona", "add", "pirate", "--system", str(system)],
            check=True,
            capture_output=True,
            timeout=60,
            env=env,
        )
        assert "pirate" in [m.id for m in client(server).models.list()]  # no restart needed
        ask = [{"role": "system", "content": "Keep it short."}, *QUESTION]
        reply = client(server).chat.completions.create(model="pirate", messages=ask, max_tokens=8)
        assert reply.model == "pirate" and reply.usage.completion_tokens > 0
        conversation = store_of(server).conversations()[0]
        assert conversation["persona"] == "pirate"  # the session ran as the persona...
        assert conversation["system"] == "You are a pirate. Answer like one.\n\nKeep it short."  # ...then the client's
        assert max(api_answers(server), key=lambda m: m["id"])["model"] == "pirate"
        subprocess.run(
            [sys.executable, "-m", "assistant", "persona", "edit", "pirate", "--schema", "greeting"],
            check=True,
            capture_output=True,
            timeout=60,
            env=env,
        )
        reply = client(server).chat.completions.create(model="pirate", messages=QUESTION, max_tokens=200, temperature=0)
        assert reply.choices[0].finish_reason == "stop", reply  # a cut answer would be cut JSON
        assert set(json.loads(reply.choices[0].message.content)) == {"greeting"}  # the persona's default schema
        subprocess.run(
            [sys.executable, "-m", "assistant", "persona", "rm", "pirate"],
            check=True,
            capture_output=True,
            timeout=60,
            env=env,
        )
        assert "pirate" not in [m.id for m in client(server).models.list()]
        with pytest.raises(openai.NotFoundError):
            client(server).chat.completions.create(model="pirate", messages=QUESTION, max_tokens=4)
        system.write_text("Remember these words: " + "lighthouse keeper " * 1500)  # more than the 2048-token window
        subprocess.run(
            [sys.executable, "-m", "assistant", "persona", "add", "huge", "--system", str(system)],
            check=True,
            capture_output=True,
            timeout=60,
            env=env,
        )
        with pytest.raises(openai.BadRequestError, match="its context needs"):  # refused, never silently cut
            client(server).chat.completions.create(model="huge", messages=QUESTION, max_tokens=4)


@pytest.mark.timeout(300)
def test_escalation_only_under_an_explicit_auto_policy(tmp_path: Path) -> None:
    from teacher_servers import ANSWER, FakeTeacher

    teacher = FakeTeacher()
    factual = [{"role": "user", "content": "Who was the second president of Botswana?"}]
    try:
        for policy, escalates in (("ask", False), ("auto", True)):
            env = {
                "ASSISTANT_TEACHER_URL": teacher.url,
                "ASSISTANT_TEACHER_MODEL": "fake-teacher",
                "ASSISTANT_ESCALATION": policy,
            }
            teacher.set("ok")
            with ServeProcess(tmp_path / policy, env=env) as server:
                reply = client(server).chat.completions.create(
                    model=MODEL, messages=factual, max_tokens=8, temperature=0
                )
                answer = max(api_answers(server), key=lambda m: m["id"])
            assert bool(teacher.requests) is escalates, policy  # `ask` has nobody to ask: nothing is sent
            assert (reply.choices[0].message.content == "".join(ANSWER)) is escalates
            assert answer["escalated"] == int(escalates) and json.loads(answer["route"])["via"] == "API"
    finally:
        teacher.close()


def test_ctrl_c_ends_the_streams_in_progress_and_exits_quickly(tmp_path: Path) -> None:
    server = ServeProcess(tmp_path / "home", "--model", MODEL)
    before = server.health()
    with (
        httpx.Client(timeout=120) as http,
        http.stream(
            "POST",
            f"{server.url}/chat/completions",
            json={
                "model": MODEL,
                "messages": [{"role": "user", "content": LONG}],
                "max_tokens": 1500,
                "temperature": 0,
                "stream": True,
            },
        ) as response,
    ):
        lines = response.iter_lines()
        next(line for line in lines if '"content": "' in line and '"content": ""' not in line)  # it is answering
        server.process.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        events = [line for line in lines if line.startswith("data: ")]
    assert server.wait(timeout=30) == 0
    assert time.monotonic() - interrupted < 10
    assert json.loads(events[-1][6:])["error"]["code"] == "shutting_down"  # the client is told, not left hanging
    assert not any("Traceback" in line for line in server.stderr) and before["finished"] == 0
    stderr = server.stderr  # "stopped" even when SIGINT was ignored at start (uvicorn re-raises none); an unload
    assert "assistant serve: stopped\n" in stderr, stderr[-5:]  # note may follow it (logged by the unloading thread)
    after = stderr[stderr.index("assistant serve: stopped\n") + 1 :]
    assert all(line.startswith("assistant serve: unloaded ") for line in after), stderr[-5:]
    answer = max(api_answers(server), key=lambda m: m["id"])
    assert answer["finish_reason"] == "cancelled" and answer["content"]
