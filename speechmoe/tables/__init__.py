"""The paper's Tables 1-3 and Figure 2 from per-run result files, with seeds and error bars.

``python -m speechmoe.tables --tables-dir DIR`` reads ``DIR/runs/<system>/seed<k>.json``
(+ ``.utts.json.gz``) and writes ``TABLES.md``, ``tables.json``, ``fig2_dev_loss.png`` and
``routing_moe_8e.png`` into DIR. Import each name from the module that defines it:

* :mod:`~speechmoe.tables.paper` -- the paper's systems (``SYSTEMS``, the one list of them),
  row and column names, published numbers, table layout and claimed orderings;
* :mod:`~speechmoe.tables.runs` -- the run files: loading, checks, selection, the errors
  (``TablesError`` and its subclasses);
* :mod:`~speechmoe.tables.stats` -- seed statistics, pooled counts, the paired bootstrap,
  ``compare``;
* :mod:`~speechmoe.tables.report` -- each system's costs, ``build_report`` (every number, one
  function per table) and ``write_tables``;
* :mod:`~speechmoe.tables.markdown` -- ``render_markdown``: TABLES.md, one function per section;
* :mod:`~speechmoe.tables.figures` -- Figure 2 and the routing plot (matplotlib);
* :mod:`~speechmoe.tables.cli` -- ``main``, the command line.

numpy and matplotlib are imported inside the functions that use them.
"""
