"""The portal as the benchmark serves it: configured from the environment, rate limit raised.

The limit per token would otherwise cap the load generator; everything else (the limiter's
check included) runs as in production.
"""

from portal import create_app

app = create_app()
app.config["API_RATE_LIMIT"] = "1000000000 per minute"
