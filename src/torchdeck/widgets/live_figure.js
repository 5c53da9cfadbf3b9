// The front end of LiveFigure (_figure.py): plotly's FigureWidget front end, loaded so that
// the figure's model is ready at once.
//
// Why: anywidget (0.11) gives a model 2 s from its creation to import its ESM and run
// `initialize`; past that it rejects the model's `ready` for good, and from then on drops
// every message to the model, with no console error (the @jupyterlab/services in Voila 0.5
// logs only canceled futures from its message chain). Plotly's ESM is a 4.9 MB bundle; as
// each figure's `_esm` it was imported once per figure, all at page load, and under CPU load
// the second or third figure missed the 2 s: drawn from its first state, deaf to every update.
//
// Here `_esm` is this small file; plotly's bundle comes in the `_plotly_esm` trait and is
// imported once per page (keyed by `_plotly_key`, a hash of it) after `initialize` returned.
// Plotly edits that arrive before plotly's model code is bound are queued and replayed to it.

const LOADS = (globalThis.__torchdeck_plotly_loads ??= new Map()); // key -> Promise of plotly's module

// The messages plotly's Python side sends by setting a trait, then None (basewidget.py).
const PY2JS = ["_py2js_addTraces", "_py2js_deleteTraces", "_py2js_moveTraces", "_py2js_restyle",
  "_py2js_relayout", "_py2js_update", "_py2js_animate", "_py2js_removeLayoutProps",
  "_py2js_removeTraceProps"];

function loadPlotly(model) {
  const key = model.get("_plotly_key");
  if (!LOADS.has(key)) {
    const url = URL.createObjectURL(new Blob([model.get("_plotly_esm")], { type: "text/javascript" }));
    LOADS.set(key, import(/* webpackIgnore: true */ url).finally(() => URL.revokeObjectURL(url)));
  }
  return LOADS.get(key);
}

// The model as plotly's code sees it: the same model, except that `get` of a queued message
// name returns the queued value while it is replayed, and plotly's listeners are recorded so
// the replay can call them (no `set`: a replay must not echo edits back to the kernel).
function replayable(model) {
  const listeners = new Map(); // event -> [callback]
  const replaying = new Map(); // trait name -> value
  const seen = {
    ...model,
    get: (name) => (replaying.has(name) ? replaying.get(name) : model.get(name)),
    on: (event, callback) => {
      model.on(event, callback);
      listeners.set(event, [...(listeners.get(event) ?? []), callback]);
    },
  };
  const replay = (name, value) => {
    replaying.set(name, value);
    try {
      for (const callback of listeners.get(`change:${name}`) ?? []) callback();
    } finally {
      replaying.delete(name);
    }
  };
  return { seen, replay };
}

export default () => {
  let plotly; // plotly's widget definition for this model, once bound
  let bound; // Promise<void>: plotly's model code listens and the queue is replayed
  return {
    initialize({ model }) {
      const early = [];
      for (const name of PY2JS) {
        model.on(`change:${name}`, () => {
          const value = model.get(name);
          if (plotly === undefined && value !== null) early.push([name, value]);
        });
      }
      const { seen, replay } = replayable(model);
      // Started in a later task, so `initialize` takes no time and the model is ready at once,
      // and so the other figures' loaders, imported in the same burst, are ready before the
      // bundle's compile (seconds under load, in one task) holds the page's main thread.
      bound = new Promise((resolve) => setTimeout(resolve, 0))
        .then(() => loadPlotly(model))
        .then(async (mod) => {
          const definition = typeof mod.default === "function" ? await mod.default() : mod.default;
          // Plotly's `initialize` adds its listeners before it returns: the queue is replayed in
          // the same task, so no message can come between and the edits keep their order.
          const initialized = definition.initialize?.({ model: seen });
          plotly = definition;
          for (const [name, value] of early.splice(0)) replay(name, value);
          await initialized;
        });
      bound.catch((error) => console.error("torchdeck: could not load plotly's widget code", error));
    },
    async render({ model, el, signal }) {
      await bound;
      if (signal?.aborted) return undefined;
      return plotly.render({ model, el, signal });
    },
  };
};
