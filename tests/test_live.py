"""The live feed and the app's own routes (explorer/ui/live): what a viewer's poll receives, long polls that wake on
a change, votes through the route, page links and assets. No browser, no worker: rows are written straight into a
throw-away store, as a worker would write them."""

from __future__ import annotations

import json
import threading
import time

import pytest
from starlette.testclient import TestClient
from starlette.applications import Starlette

from explorer import lessons
from explorer.config import Config
from explorer.states import RunState
from explorer.store import RunStore
from explorer.ui.live import api
from explorer.ui.live.feed import Feed, View, patch

QUERY = {"models": "plain8,resnet8", "subset": "200", "test": "100", "batch": "32", "steps": "600", "probe": "5",
         "data": "synthetic"}


class Progress:
    """What a trainer publishes after a flush (the store keeps its JSON)."""

    def __init__(self, step: int, total: int = 600):
        self.step, self.total = step, total

    def to_json(self) -> str:
        return json.dumps({"step": self.step, "total_steps": self.total, "epoch": self.step / 6})


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "runs.sqlite")


def new_run(store: RunStore, status: RunState = RunState.RUNNING) -> str:
    config = Config.from_query(QUERY)
    return store.create_run(config, device="cpu", data_source="synthetic", status=status,
                            models=[dict(model=m, idx=i, params=1000) for i, m in enumerate(config.labels)])


def flush(store: RunStore, run_id: str, first: int, last: int, probes: bool = False) -> None:
    """Rows of steps first..last-1 for both models, then the progress, as one trainer flush writes them."""
    labels = ("plain8", "resnet8")
    steps = [dict(model=m, step=s, epoch=s / 6, loss=2.0 - s / 400, train_err=80 - s / 10 - 10 * (m == "resnet8"),
                  lr=0.1, wall=s * 0.1) for s in range(first, last) for m in labels]
    rows = [dict(model=m, step=first, layer=k, layer_name=f"stage1.0.layer{k}.conv", grad_norm=0.1 * (k + 1),
                 weight_norm=1.0, update_ratio=1e-3, response_std=0.5) for m in labels for k in range(3)]
    store.append(run_id, steps=steps, probes=rows if probes else ())
    store.set_progress(run_id, Progress(last))


def test_a_poll_after_a_flush_sends_only_the_new_points(store):
    run_id = new_run(store)
    flush(store, run_id, 0, 50, probes=True)
    live = Feed(store).run(run_id)
    views = [View("errors"), View("loss", "step"), View("diagram")]
    first = json.loads(live.payload(views, -1))
    assert {key: list(change) for key, change in first["charts"].items()} == {
        "errors:epoch:1:grad_norm": ["full"], "loss:step:1:grad_norm": ["full"], "diagram:epoch:1:grad_norm": ["full"]}
    assert first["status"]["state"] == "running" and first["status"]["parts"][0] == "step 50 / 600"
    held = first["charts"]["errors:epoch:1:grad_norm"]["full"]["data"]

    flush(store, run_id, 50, 60)
    assert live.refresh()
    second = json.loads(live.payload(views, first["v"]))
    errors = second["charts"]["errors:epoch:1:grad_norm"]
    assert "full" not in errors and "layout" not in errors
    for change in errors["traces"]:  # each training curve keeps its 50 points and gains 10, and nothing else
        assert change["keep"] == len(held[change["i"]]["x"]) == 50
        assert len(change["add"]["x"]) == len(change["add"]["y"]) == 10
        assert change["add"]["x"][0] == pytest.approx(50 / 6)
    assert "diagram:epoch:1:grad_norm" not in second["charts"]  # no new probe: nothing to send
    assert second["status"]["parts"][0] == "step 60 / 600"
    assert len(live.payload(views, first["v"])) < len(live.payload(views, -1)) / 4

    assert not live.refresh()  # nothing moved: no new version, the same cached answer
    assert live.payload(views, first["v"]) is live.payload(views, first["v"])


def test_a_viewer_too_far_behind_or_asking_a_new_view_gets_the_whole_figure(store):
    run_id = new_run(store)
    flush(store, run_id, 0, 10)
    live = Feed(store).run(run_id)
    start = json.loads(live.payload([View("errors")], -1))["v"]
    for first in range(10, 130, 10):
        flush(store, run_id, first, first + 10)
        live.refresh()
        live.payload([View("errors")], start)  # every version's figure is built
    late = json.loads(live.payload([View("errors")], start))
    assert "full" in late["charts"]["errors:epoch:1:grad_norm"]  # its figure is no longer held: all of it again
    fresh = json.loads(live.payload([View("errors"), View("lr")], live.version - 1))
    assert "full" in fresh["charts"]["lr:epoch:1:grad_norm"]


def test_patch_rebuilds_what_it_cannot_extend():
    old = {"data": [{"x": [1, 2, 3], "y": [5, 6, 7], "name": "a"}], "layout": {"height": 300}}
    grown = {"data": [{"x": [1, 2, 3, 4], "y": [5, 6, 7.5, 8], "name": "a"}], "layout": {"height": 300}}
    assert patch(old, grown) == {"traces": [{"i": 0, "keep": 2, "add": {"x": [3, 4], "y": [7.5, 8]}}]}
    renamed = {"data": [{"x": [1, 2, 3], "y": [5, 6, 7], "name": "b"}], "layout": {"height": 300}}
    assert patch(old, renamed) == {"traces": [{"i": 0, "trace": renamed["data"][0]}]}
    more = {"data": old["data"] * 2, "layout": {"height": 300}}
    assert patch(old, more) == {"full": more}
    taller = {"data": old["data"], "layout": {"height": 400}}
    assert patch(old, taller) == {"layout": {"height": 400}}


def test_views_are_checked():
    assert View.parse("diagram:step:1.5:response_std") == View("diagram", "step", 1.5, "response_std")
    assert View.parse("errors") == View("errors")
    for bad in ("nonsense", "errors:sideways", "errors:epoch:99", "diagram:epoch:1:colour", "errors:epoch:x"):
        with pytest.raises(ValueError):
            View.parse(bad)


# --- the routes ---------------------------------------------------------------------------------------------------
@pytest.fixture
def client(store, monkeypatch):
    monkeypatch.setattr(api, "POLL_SECONDS", 0.05)
    routes = api.Routes(lambda: store)
    with TestClient(Starlette(routes=routes.routes())) as test_client:
        yield test_client


def test_the_live_route_answers_at_once_then_waits_for_the_next_flush(store, client, monkeypatch):
    run_id = new_run(store)
    flush(store, run_id, 0, 20)
    first = client.get(f"/api/runs/{run_id}/live", params={"views": "errors,lr", "v": -1})
    assert first.status_code == 200 and first.headers["cache-control"] == "no-store"
    version = first.json()["v"]

    later = threading.Timer(0.4, flush, (store, run_id, 20, 30))
    later.start()
    started = time.perf_counter()
    second = client.get(f"/api/runs/{run_id}/live", params={"views": "errors,lr", "v": version})
    waited = time.perf_counter() - started
    assert 0.3 < waited < 3.0  # held open until the flush landed, answered within a poll of it
    body = second.json()
    assert body["v"] > version and body["status"]["parts"][0] == "step 30 / 600"
    assert all("full" not in change for change in body["charts"].values())

    monkeypatch.setattr(api, "WAIT_SECONDS", 0.2)
    quiet = client.get(f"/api/runs/{run_id}/live", params={"views": "errors,lr", "v": body["v"]})
    assert quiet.json()["v"] == body["v"] and quiet.json()["charts"] == {}


def test_the_live_route_refuses_bad_requests_with_a_message(store, client):
    run_id = new_run(store)
    unknown = client.get("/api/runs/r20990101-000000-abcd/live", params={"views": "errors"})
    assert unknown.status_code == 404 and "not in this app's run store" in unknown.json()["error"]
    assert client.get("/api/runs/nonsense/live").status_code == 400
    bad_view = client.get(f"/api/runs/{run_id}/live", params={"views": "errors:sideways"})
    assert bad_view.status_code == 400 and "x axis" in bad_view.json()["error"]
    assert client.get(f"/api/runs/{run_id}/live", params={"v": "soon"}).status_code == 400


def test_a_vote_through_the_route_reaches_a_waiting_tally_at_once(store, client):
    lesson_id = lessons.open_lesson(store, "deeper-plain", "teacher-key-0000000000").lesson_id
    tally = client.get(f"/api/lessons/{lesson_id}", params={"v": -1}).json()
    assert tally["phase"] == "voting" and tally["total"] == 0 and set(tally["options"]) == {"plain20", "plain56",
                                                                                              "same"}
    voted = {}

    def vote() -> None:
        time.sleep(0.3)
        voted["at"] = time.perf_counter()
        voted["answer"] = client.post(f"/api/lessons/{lesson_id}/vote", json={"voter": "student-0001",
                                                                              "choice": "plain56"})

    thread = threading.Thread(target=vote)
    thread.start()
    woken = client.get(f"/api/lessons/{lesson_id}", params={"v": tally["v"]}).json()
    thread.join()
    assert voted["answer"].json() == {"ok": True, "mine": "plain56"}
    assert woken["counts"] == {"plain20": 0, "plain56": 1, "same": 0}
    assert time.perf_counter() - voted["at"] < 1.0
    assert client.get(f"/api/lessons/{lesson_id}/mine", params={"voter": "student-0001"}).json() == {
        "mine": "plain56"}

    changed = client.post(f"/api/lessons/{lesson_id}/vote", json={"voter": "student-0001", "choice": "same"})
    assert changed.status_code == 200 and lessons.tally(store, lesson_id)["same"] == 1
    for body, message in (({"voter": "x", "choice": "same"}, "voter must be"),
                          ({"voter": "student-0002", "choice": "maybe"}, "not one of this question's answers"),
                          ({"choice": "same"}, '{"voter"')):
        refused = client.post(f"/api/lessons/{lesson_id}/vote", json=body)
        assert refused.status_code == 400 and message in refused.json()["error"]
    as_form = client.post(f"/api/lessons/{lesson_id}/vote", data={"voter": "student-0002", "choice": "same"})
    assert as_form.status_code == 400 and "JSON" in as_form.json()["error"]
    lessons.reveal(store, lesson_id, "teacher-key-0000000000", new_run(store, RunState.FINISHED))
    closed = client.post(f"/api/lessons/{lesson_id}/vote", json={"voter": "student-0003", "choice": "same"})
    assert closed.status_code == 409 and "closed" in closed.json()["error"]
    assert client.get("/api/lessons/Lnope", params={"v": -1}).status_code == 404


def test_page_addresses_and_join_links_redirect_to_the_apps_entry(client):
    moved = client.get("/Lab", params={"run": "r1", "key": "k"}, follow_redirects=False)
    assert moved.status_code == 307 and moved.headers["location"] == "/?page=Lab&run=r1&key=k"
    joined = client.get("/join/k7q2p", follow_redirects=False)
    assert joined.headers["location"] == "/?page=Classroom&join=k7q2p"
    assert client.get("/join", follow_redirects=False).headers["location"] == "/?page=Classroom&join="


def test_assets_are_served_gzipped_and_cached_under_a_name_that_changes_with_them(client):
    answer = client.get(api.ASSETS["live.js"], headers={"Accept-Encoding": "gzip"})
    assert answer.status_code == 200 and "immutable" in answer.headers["cache-control"]
    assert b"export default function" in answer.content  # the client decompressed it
    raw = client.get(api.ASSETS["plotly.js"], headers={"Accept-Encoding": "identity"})
    assert raw.headers.get("content-encoding") is None and len(raw.content) > 3_000_000
    assert client.get("/api/assets/plotly-0000.js").status_code == 404
