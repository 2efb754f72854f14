from counterscan.cli import app

app(prog_name="counterscan")
