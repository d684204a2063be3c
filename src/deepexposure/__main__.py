from deepexposure.cli import main

main()
