from producer_tools.cli import main

main()
