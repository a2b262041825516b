from allocator.cli.main import app

app()
