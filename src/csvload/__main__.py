from csvload.cli import main

main()
