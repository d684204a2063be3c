from deepexposure.apps.cli import run

run()
