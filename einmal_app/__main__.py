from einmal_app.cli import main

main(prog_name="einmal")
