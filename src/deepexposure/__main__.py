from deepexposure.apps.cli import main

main()
