"""`python -m cifar_nn`: the same program as the `cifar-nn` command (see `cifar_nn.cli`)."""
from cifar_nn.cli import main

if __name__ == '__main__': raise SystemExit(main())
