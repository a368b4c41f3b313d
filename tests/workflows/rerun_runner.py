"""Run the workflow module ``wf`` (in this file's folder) once: ``python runner.py '{"n": 3}'``."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import wf  # noqa: E402

from slothflow import Scheduler  # noqa: E402

scheduler = Scheduler(config={"backend": {"db_uri": os.environ["RERUN_DB"]}})
try:
    arguments = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    result = scheduler.run(wf.main(**arguments))
finally:
    scheduler.close()
print(json.dumps(result, sort_keys=True))
