"""Ray Serve hosting three deployments (rayserve_models.py: iris, lang, and ranker behind ``@serve.batch``) on a
bounded local Ray cluster, on loopback.

Run in the Ray Serve venv (tests/server_venv.sh rayserve) with modelotel and tests/apps on PYTHONPATH:
``python rayserve_app.py PORT``. The cluster: 1 CPU, a 100 MB object store, no dashboard; the replicas inherit
this process's environment (MODELOTEL_EXPORT_FILE), and each exports its own data under its own
service.instance.id. Prints ``ready`` when every deployment answers; shuts Ray down on SIGTERM.
"""

import signal
import sys
import time

import ray
from ray import serve
from rayserve_models import Iris, Lang, Ranker

if __name__ == "__main__":
    port = int(sys.argv[1])
    ray.init(
        num_cpus=1,
        object_store_memory=100 * 1024 * 1024,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
    )
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(Iris.bind(), name="iris", route_prefix="/iris")
    serve.run(Lang.bind(), name="lang", route_prefix="/lang")
    serve.run(Ranker.bind(), name="ranker", route_prefix="/ranker")
    print("ready", flush=True)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    while not stopping:
        time.sleep(0.1)
    serve.shutdown()
    ray.shutdown()
