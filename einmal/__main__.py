from einmal.cli import main

main(prog_name="einmal")
