"""AWS Lambda entry point: ``python -m awslambdaric serve.lambda_handler.handler``.

apig-wsgi adapts API Gateway REST (payload 1.0), HTTP API (2.0), ALB and function-URL events to the same WSGI app
(multi-value headers and query strings included); :mod:`serve.events` normalises them first and answers warm-up
pings and other events. The app is built once per execution environment, in the init phase, from the environment
(``PRICETRAIL_*``, see :mod:`pricetrail.serving.config`); models load on first request.
"""

from __future__ import annotations

import logging

from pricetrail.serving.config import from_environment
from serve.app import create_app
from serve.events import make_handler

logging.getLogger().setLevel(logging.INFO)

app = create_app(from_environment())
handler = make_handler(app)
