"""AWS Lambda entry point: ``python -m awslambdaric serve.lambda_handler.handler``.

apig-wsgi adapts API Gateway REST (payload 1.0), HTTP API (2.0), ALB and function-URL events to the same WSGI app
(multi-value headers and query strings included). The app is built once per execution environment, in the init
phase, from the environment (``PRICETRAIL_*``, see :mod:`pricetrail.serving.config`); models load on first request.
"""

from __future__ import annotations

import logging

from apig_wsgi import make_lambda_handler

from pricetrail.serving.config import from_environment
from serve.app import create_app

logging.getLogger().setLevel(logging.INFO)

app = create_app(from_environment())
handler = make_lambda_handler(app, binary_support=False)
