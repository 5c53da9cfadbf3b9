"""LiveFigure's front end: a small loader that is ready at once and hands plotly's edits on in order.

The browser test (tests/browser) runs it for real in Chromium; here its logic runs in Node
against a stand-in for plotly's widget code, so the queue and its replay are checked exactly.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from importlib import resources

import plotly.graph_objects as go
import pytest

from torchdeck.widgets._figure import LiveFigure

LOADER = resources.files("torchdeck.widgets").joinpath("live_figure.js")


def test_the_loader_is_the_esm_and_plotly_bundle_travels_in_the_state():
    state = LiveFigure().get_state()
    assert state["_esm"] == LOADER.read_text()
    # plotly's own FigureWidget is the reference: its ESM is the bundle the loader imports.
    assert state["_plotly_esm"] == go.FigureWidget().get_state()["_esm"]
    assert len(state["_esm"]) < len(state["_plotly_esm"]) / 100


def test_figures_share_one_key_for_one_bundle():
    a, b = LiveFigure(), LiveFigure()
    assert a._plotly_key == b._plotly_key
    assert re.fullmatch(r"[0-9a-f]{16}", a._plotly_key)


def test_the_loader_queues_every_message_plotly_sends():
    listed = re.search(r"const PY2JS = \[(.*?)\];", LOADER.read_text(), re.S)
    assert listed is not None
    queued = set(re.findall(r'"(_py2js_\w+)"', listed.group(1)))
    assert queued == {name for name in go.FigureWidget().trait_names() if name.startswith("_py2js_")}


# A stand-in for plotly's widget code: its `initialize` listens to the message traits on the
# model it is given, as plotly's does, and records every edit it sees.
HARNESS = """
const seen = [];
let madeDuringInitialize = false, initializing = false, atRender = null;
const messages = ["_py2js_addTraces", "_py2js_restyle", "_py2js_update"];
const plotly = () => {
  if (initializing) madeDuringInitialize = true;
  return {
    initialize({ model }) {
      for (const name of messages)
        model.on(`change:${name}`, () => { const v = model.get(name); if (v !== null) seen.push(v.id); });
    },
    render({ el }) { atRender = [...seen]; el.drawn = true; return () => {}; },
  };
};
globalThis.__torchdeck_plotly_loads = new Map([["k", Promise.resolve({ default: plotly })]]);

function model(attributes) {
  const listeners = new Map();
  return {
    get: (name) => attributes[name],
    set: (name, value) => {
      attributes[name] = value;
      for (const cb of listeners.get(`change:${name}`) ?? []) cb();
    },
    on: (event, cb) => listeners.set(event, [...(listeners.get(event) ?? []), cb]),
    off: () => {}, save_changes: () => {}, send: () => {},
  };
}
// As the kernel sends an edit: the trait set to it, then straight back to null.
const send = (m, name, id) => { m.set(name, { id }); m.set(name, null); };

const { default: loader } = await import(process.argv[2]);
const m = model({ _plotly_key: "k", _plotly_esm: "unused: the load is cached under k" });
const definition = loader();
initializing = true;
const returned = definition.initialize({ model: m });
initializing = false;
send(m, "_py2js_addTraces", 1);
send(m, "_py2js_restyle", 2);
send(m, "_py2js_addTraces", 3);
const el = {};
const cleanup = await definition.render({ model: m, el });
send(m, "_py2js_update", 4);
console.log(JSON.stringify({ seen, atRender, drawn: el.drawn === true, cleanup: typeof cleanup,
                             returned: returned === undefined, madeDuringInitialize }));
"""


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> dict:
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed; the browser test covers the loader")
    harness = tmp_path_factory.mktemp("loader") / "harness.mjs"
    harness.write_text(HARNESS)
    with resources.as_file(LOADER) as loader:
        out = subprocess.run([node, str(harness), loader.as_uri()], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_initialize_returns_at_once_without_touching_plotly(replay):
    # anywidget drops every message to a model whose initialize is not done within 2 s.
    assert replay["returned"] is True
    assert replay["madeDuringInitialize"] is False


def test_edits_sent_before_plotly_loads_are_replayed_in_order_once(replay):
    assert replay["atRender"] == [1, 2, 3]
    assert replay["seen"] == [1, 2, 3, 4]


def test_render_is_plotlys(replay):
    assert replay["drawn"] is True
    assert replay["cleanup"] == "function"
