"""The baseline of the consent-check benchmark: a bare Flask hello-world."""

from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello() -> str:
    """Answer as cheaply as Flask can."""
    return "Hello, World!"
