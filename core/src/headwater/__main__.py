"""``python -m headwater`` is the ``headwater`` command."""

from headwater._cli import main

if __name__ == "__main__":
    main()
