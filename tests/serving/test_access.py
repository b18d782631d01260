"""Who may do what (cnnlab.serving.access): predictions are open; every route that changes the
server needs the token, from the server's own page or a program, with a JSON body; a ``Host`` that
is not this machine's is refused; ``--no-train`` removes the Train tab; ``cnnlab serve`` prints
the URL with the token and warns when it listens beyond loopback."""

from __future__ import annotations

import numpy as np
import pytest
import uvicorn
from starlette.routing import Mount

from cnnlab.cli import main
from cnnlab.serving.access import OPEN_POSTS, SAFE_METHODS
from cnnlab.serving.serve import create_app
from cnnlab.using.predict import png_bytes
from tests.helpers import free_port
from tests.serving.conftest import OWNER, TOKEN, local_client

STOP = ("/api/train/stop", {})  # a state-changing route that, with no training under way, changes nothing


@pytest.fixture(scope="module")
def client(mnist_run, tmp_path_factory):
    return local_client(mnist_run, runs=tmp_path_factory.mktemp("access") / "page-runs")


def one_line(reply) -> str:
    error = reply.json()["error"]
    assert "\n" not in error and "Traceback" not in reply.text
    return error


def every_route(routes):
    """The app's routes, those of included routers too (FastAPI may keep a router whole), bar mounts."""
    for route in routes:
        if hasattr(route, "original_router"):
            yield from every_route(route.original_router.routes)
        elif not isinstance(route, Mount):
            yield route


def test_every_route_that_changes_the_server_needs_the_token(client):
    """Walks the app's routes: each one a method other than GET reaches, bar the prediction routes,
    is refused without the token and with a wrong one, and says so in the OpenAPI page."""
    guarded = []
    paths = client.get("/openapi.json").json()["paths"]
    for route in every_route(client.app.routes):
        for method in sorted(set(route.methods) - SAFE_METHODS):
            if route.path in OPEN_POSTS:
                continue
            guarded.append(route.path)
            assert client.request(method, route.path, json={}).status_code == 401, route.path
            wrong = client.request(method, route.path, json={}, headers={"authorization": "Bearer guessed"})
            assert wrong.status_code == 403, route.path
            assert paths[route.path][method.lower()]["security"] == [{"HTTPBearer": []}], "not marked in /docs"
    assert sorted(guarded) == ["/api/train", "/api/train/stop"]


def test_a_route_added_later_is_guarded_without_being_told(mnist_run):
    client = local_client(mnist_run, train=False)
    changed = []

    @client.app.post("/api/something-new")
    def something_new() -> dict:
        changed.append(True)
        return {}

    assert client.post("/api/something-new", json={}).status_code == 401 and not changed
    assert client.post("/api/something-new", json={}, headers=OWNER).status_code == 200 and changed


def test_predictions_stay_open(client):
    drawn = png_bytes(np.pad(np.full((12, 4), 255, np.uint8), 8))  # a white stroke on black
    for path in ("/api/predict", "/api/explain"):
        reply = client.post(path, files={"file": ("d.png", drawn)}, headers={"origin": "http://elsewhere.example"})
        assert reply.status_code in (200, 422), reply.text  # an answer, or "no ink": never a refusal
    for path in ("/", "/static/app.js", "/api/model", "/healthz", "/docs", "/api/train/options"):
        assert client.get(path).status_code == 200, path


def test_the_issues_reproduction_a_stranger_cannot_replace_the_model(client, tmp_path):
    before = client.get("/api/model").json()
    reply = client.post("/api/train", json={"preset": "fast", "epochs": 1, "limit": 100})
    assert reply.status_code == 401
    assert one_line(reply).startswith("this request changes the server and needs its token: open the URL that "
                                      "cnnlab serve printed (http://127.0.0.1:8000/?token=...)")
    assert reply.headers["www-authenticate"] == "Bearer"
    assert client.get("/api/train").status_code == 404  # nothing started
    assert client.get("/api/model").json() == before


def test_no_token_is_401(client):
    reply = client.post(STOP[0], json=STOP[1])
    assert reply.status_code == 401 and "needs its token" in one_line(reply)


def test_a_wrong_token_is_403(client):
    for header in ("Bearer " + TOKEN[:-1] + "x", TOKEN, "Basic " + TOKEN, "Bearer "):
        reply = client.post(STOP[0], json=STOP[1], headers={"authorization": header})
        assert reply.status_code == 403 and one_line(reply).startswith("wrong token: open the URL"), header


def test_the_right_token_passes(client):
    reply = client.post(STOP[0], json=STOP[1], headers=OWNER)  # reaches the route: nothing to stop
    assert reply.status_code == 404 and "no training has been started" in one_line(reply)
    same_page = {**OWNER, "origin": "http://127.0.0.1:8000", "sec-fetch-site": "same-origin"}
    assert client.post(STOP[0], json=STOP[1], headers=same_page).status_code == 404


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", "localhost.evil"])
def test_a_foreign_host_is_refused_on_every_route(client, host):
    for method, path in (("GET", "/"), ("GET", "/api/model"), ("POST", "/api/predict"), ("POST", STOP[0])):
        reply = client.request(method, path, headers={**OWNER, "host": host}, json={})
        assert reply.status_code == 403, (host, path)
        assert one_line(reply).startswith(f"Host '{host}' is not a name this server answers to (a guard against "
                                          "DNS rebinding): open http://127.0.0.1:8000/, or start the server with "
                                          "--allowed-host ")


@pytest.mark.parametrize("host", ["localhost", "localhost:8000", "127.0.0.1", "127.0.0.1:8000", "[::1]:8000",
                                  "LOCALHOST:8000", "127.0.0.2:8000"])
def test_loopback_names_are_answered(client, host):
    assert client.get("/api/model", headers={"host": host}).status_code == 200, host


@pytest.mark.parametrize("host", ["localhost:8000@evil.example", "[::1]evil.example", "[::1]:evil", "127.0.0.1:abc",
                                  "127.0.0.1:", "127.0.0.1:99999", "localhost..", ".localhost", "::1", "[::1%25lo]",
                                  "localhost:8000:8000", "evil.example:127.0.0.1", "local host", "localhost%2e"])
def test_a_host_that_is_not_a_name_or_an_address_with_a_port_is_400(client, host):
    reply = client.get("/api/model", headers={"host": host})
    assert reply.status_code == 400, host
    assert one_line(reply) == (f"Host '{host}' is not a name or an address with an optional :port; open "
                               "http://127.0.0.1:8000/")


@pytest.mark.parametrize("host", ["localhost.", "LocalHost.:8000", "[0:0:0:0:0:0:0:1]:8000", "127.0.0.1:0"])
def test_loopback_names_in_their_other_spellings_are_answered(client, host):
    assert client.get("/api/model", headers={"host": host}).status_code == 200, host


@pytest.mark.parametrize("name", ["host", "origin", "content-type", "authorization", "sec-fetch-site"])
def test_a_checked_header_sent_twice_is_400(client, name):
    """With two, the check here and the route could read different ones: ``Content-Type: text/plain``
    then ``application/json`` once passed the JSON-only check."""
    first = {"host": "evil.example", "origin": "http://evil.example", "content-type": "text/plain",
             "authorization": "Bearer guessed", "sec-fetch-site": "cross-site"}[name]
    second = {"host": "127.0.0.1:8000", "origin": "http://127.0.0.1:8000", "content-type": "application/json",
              "authorization": OWNER["authorization"], "sec-fetch-site": "same-origin"}[name]
    headers = [*((k, v) for k, v in {**OWNER, "content-type": "application/json"}.items() if k != name),
               (name, first), (name, second)]
    reply = client.post(STOP[0], content=b"{}", headers=headers)
    assert reply.status_code == 400, (name, reply.text)
    assert one_line(reply).startswith("the request carries more than one ") and one_line(reply).endswith(
        " header; send one")


def test_no_page_or_answer_may_be_framed_by_another_site(client):
    """The page holds the token: another site must not show it in a frame (clickjacking), as Jupyter guards."""
    for reply in (client.get("/"), client.get("/static/app.js"), client.get("/api/model"), client.get("/docs"),
                  client.post(STOP[0], json=STOP[1]), client.get("/nowhere"), client.get("/", headers={"host": "e.x"})):
        assert reply.headers["x-frame-options"] == "DENY", reply.url
        assert reply.headers["content-security-policy"] == "frame-ancestors 'none'"
        assert reply.headers["x-content-type-options"] == "nosniff"


def test_allowed_hosts_and_the_bound_address_are_answered(mnist_run):
    named = local_client(mnist_run, allowed_hosts=("cnnlab.lan",), train=False)
    assert named.get("/healthz", headers={"host": "cnnlab.lan:8000"}).status_code == 200
    assert named.get("/healthz", headers={"host": "192.168.1.5:8000"}).status_code == 403  # loopback only
    exposed = local_client(mnist_run, host="0.0.0.0", train=False)
    assert exposed.get("/healthz", headers={"host": "192.168.1.5:8000"}).status_code == 200  # its address, typed
    # Any address, not only the machine's own: an address cannot be pointed elsewhere by DNS.
    assert exposed.get("/healthz", headers={"host": "[2001:db8::7]:8000"}).status_code == 200
    assert exposed.get("/healthz", headers={"host": "192.168.1.5:8000@evil.example"}).status_code == 400
    assert exposed.get("/healthz", headers={"host": "rebound.example:8000"}).status_code == 403
    bound = local_client(mnist_run, host="myhost.lan", train=False)
    assert bound.get("/healthz", headers={"host": "myhost.lan:8000"}).status_code == 200


@pytest.mark.parametrize("origin", ["http://evil.example", "http://127.0.0.1:9999", "null", "https://localhost:8000"])
def test_a_foreign_origin_is_403(client, origin):
    reply = client.post(STOP[0], json=STOP[1], headers={**OWNER, "origin": origin})
    assert reply.status_code == 403
    assert one_line(reply).startswith(f"a request from another site ({origin}) cannot change this server; use the page "
                                      "at http://127.0.0.1:8000/")


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_sec_fetch_site_cross_site_is_403(client, site):
    reply = client.post(STOP[0], json=STOP[1], headers={**OWNER, "sec-fetch-site": site})
    assert reply.status_code == 403 and f"(Sec-Fetch-Site: {site}) cannot change this server" in one_line(reply)


@pytest.mark.parametrize("body", [{"data": {"preset": "fast"}}, {"files": {"preset": ("p", b"fast")}},
                                  {"content": b"{}", "headers": {**OWNER, "content-type": "text/plain"}},
                                  {"content": b"{}"}])
def test_a_body_that_is_not_json_is_415(client, body):
    """The bodies a form on another site can send without the browser asking first, and none."""
    reply = client.post("/api/train", **{"headers": OWNER, **body})
    assert reply.status_code == 415
    assert one_line(reply).startswith("requests that change the server take a JSON body: send 'Content-Type: "
                                      "application/json'")
    assert client.get("/api/train").status_code == 404


def test_no_train_removes_the_train_tab_and_its_routes(mnist_run):
    client = local_client(mnist_run, train=False)
    assert client.get("/api/model").json()["training"] is False  # the page hides the tab
    for method, path in (("POST", "/api/train"), ("POST", "/api/train/stop"), ("GET", "/api/train"),
                         ("GET", "/api/train/options"), ("GET", "/api/train/events")):
        assert client.request(method, path, headers=OWNER, json={}).status_code == 404, path
    assert "/api/train" not in client.get("/openapi.json").json()["paths"]


def test_create_app_makes_a_token_when_none_is_given(mnist_run):
    first, second = create_app(mnist_run), create_app(mnist_run)
    assert len(first.state.token) >= 40 and first.state.token != second.state.token


@pytest.fixture
def served(monkeypatch):
    """``cnnlab serve``'s app, as uvicorn would get it, without listening."""
    apps = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: apps.append((app, options)))
    return apps


def test_serve_prints_the_url_with_a_new_token_and_warns_only_when_exposed(mnist_run, served, capsys):
    port = free_port()
    assert main(["serve", str(mnist_run), "--port", str(port), "--workers", "1"]) == 0
    out, err = capsys.readouterr()
    token = served[0][0].state.token
    assert out == (f"Serving {mnist_run} at http://127.0.0.1:{port}/?token={token}  (API docs at /docs; Ctrl-C to "
                   "stop)\n")
    assert err == ""
    assert main(["serve", str(mnist_run), "--host", "0.0.0.0", "--port", str(port), "--workers", "1"]) == 0
    out, err = capsys.readouterr()
    assert served[1][0].state.token != token and f"?token={served[1][0].state.token}" in out
    assert err == ("warning: listening on 0.0.0.0, reachable from the network: predictions are open to anyone who "
                   "reaches it; changes (the Train tab) need the token in the URL above\n")


def test_a_token_given_by_option_or_environment_is_used_and_not_printed(mnist_run, served, capsys, monkeypatch):
    port = free_port()
    assert main(["serve", str(mnist_run), "--port", str(port), "--token", TOKEN, "--workers", "1"]) == 0
    monkeypatch.setenv("CNNLAB_TOKEN", "another-token-from-the-environment")
    assert main(["serve", str(mnist_run), "--port", str(port), "--workers", "1"]) == 0
    assert [app.state.token for app, _ in served] == [TOKEN, "another-token-from-the-environment"]
    out = capsys.readouterr().out
    assert TOKEN not in out and "?token=...  (the token of --token or $CNNLAB_TOKEN; API docs" in out


def test_a_short_token_and_bad_timeouts_are_one_line(mnist_run, served, capsys):
    unsendable = "--token (or $CNNLAB_TOKEN) must be ASCII letters, digits and punctuation only: no spaces"
    for args, words in ((["--token", "short"], "--token (or $CNNLAB_TOKEN) must be at least 16 characters"),
                        (["--token", " " * 20], unsendable), (["--token", TOKEN + " x"], unsendable),
                        (["--token", TOKEN + "\t"], unsendable), (["--token", TOKEN + "\x7f"], unsendable),
                        (["--token", TOKEN + "é"], unsendable),
                        (["--header-timeout", "0"], "--header-timeout must be between 0 and 3600 seconds"),
                        (["--body-timeout", "-1"], "--body-timeout must be between 0 and 3600 seconds")):
        assert main(["serve", str(mnist_run), *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and words in err, err
    assert not served
