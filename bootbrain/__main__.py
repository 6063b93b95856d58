from bootbrain.cli import main

main()
