from nextbest.cli import main

main()
