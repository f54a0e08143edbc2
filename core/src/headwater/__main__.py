"""``python -m headwater`` is the ``headwater`` command."""

from headwater._start import main

if __name__ == "__main__":
    main()
