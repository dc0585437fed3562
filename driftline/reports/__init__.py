"""Reports: renderings of result objects (JSON, markdown, figures), a model's history, flow-run timings."""
