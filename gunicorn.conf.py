"""gunicorn settings for production: `gunicorn -c gunicorn.conf.py` (what `make run` does).

One worker process holds the pipelines (one per device); its threads serve HTTP. The model is
never loaded in the master: the app is created in the worker, after the fork.
"""

import sys

from backend.config import ConfigError, load_settings

try:
    _settings = load_settings()
except ConfigError as error:  # a message naming the variable reads better than a traceback
    sys.exit(f"gunicorn.conf.py: {error}")

wsgi_app = "backend.main:create_app()"
bind = f"{_settings.host}:{_settings.port}"
workers = 1  # more processes would each load their own copy of the model
worker_class = "gthread"
threads = _settings.http_threads
preload_app = False  # never import torch or touch CUDA in the master
# For gthread workers `timeout` is a heartbeat of the worker's main loop, not a request limit:
# long generations run on request threads and do not trip it.
timeout = 120
graceful_timeout = _settings.graceful_timeout
keepalive = 5
# gunicorn 25+ opens a control socket at one fixed per-user path: two servers on a host (or a
# test run beside a deployment) would fight over it, and nothing here uses it.
control_socket_disable = True
loglevel = _settings.log_level
accesslog = "-"
errorlog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms rid=%({x-request-id}o)s'
