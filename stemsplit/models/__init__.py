"""Network architectures. Pure tensor code: nothing here reads files or knows the CLI."""
