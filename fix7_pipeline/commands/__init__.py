"""`fix7` subcommands beyond rehearse/demo; each module adds itself with register(subparsers)."""
