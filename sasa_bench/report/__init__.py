"""Reports: studies -> what is missing -> measured (by `measure`, `train`) -> records ->
documents and figures.

study.py     studies as code, loaded from experiments/<name>.py
store.py     the report's records and how an entry finds its own
build.py     plan what is missing, have it measured, render
render.py    records -> report.md, index.html, figures, tables
document.py  blocks -> Markdown and one self-contained HTML page
plots.py     trade-off figures: points in, a matplotlib Figure out
compare.py   bench records of several files side by side, with ratios
"""
