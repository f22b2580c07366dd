from simreel.stack.service import main

from .service import NAME, run

main(NAME, run)
