from molsample.cli import main

main()
