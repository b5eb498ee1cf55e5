"""`python -m spancli ...` is `span ...` (the tests start servers this way)."""
from spancli.main import app

app()
