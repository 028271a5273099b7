"""The HTML reports (``--html FILE``): one self-contained page per report,
drawn from the same dicts the ``--json`` output is made of, so the page
and the JSON cannot disagree.

* ``grid``: a matrix laid out for the page, sources as rows and destination
  ports as columns, both grouped by namespace, each cell in pixels;
* ``cells``: what one cell shows (its mark, the step's change, the probe,
  the tooltip naming the deciding policies) for each kind of report;
* ``pages``: a page per report (``policies-check``, ``policies-diff``, a
  live matrix from ``smoke`` or a rollout), from its JSON dict;
* ``render``: the page through the Jinja2 template in ``templates/``
  (package data), with autoescaping, inline CSS and inline SVG: no
  script, no font, nothing fetched.

Pure: dicts in, text out; no client, no file written.
"""
