from cryptoviz.cli import main

main()
