"""What a results directory turns into for people and other tools: the standard files beside
``results.json`` (HdrHistogram interval logs, ``summary.csv``), the offline HTML report and its
terminal twin, and the comparison of runs.

``data`` extracts what a report shows from a document (pure), ``standard_files`` and
``compare`` are pure too; ``html`` and ``text`` render; ``generate`` reads and writes files.
"""
