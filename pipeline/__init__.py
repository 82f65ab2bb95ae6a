"""PROCESSES: every stage of the flow, over stores/, student/ and teachers/ (see DESIGN.md, data flow).

ingest.py -> label/ (teachers -> pseudo-labels, dask job) -> train/ -> evaluate/ and deploy/; demo/ runs
them all on the synthetic world; cli/ is the click front end (the only importer of cli/); runtime.py and
checkpoint.py are shared helpers.
"""
