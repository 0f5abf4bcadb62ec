"""The data plane's Pulumi components and the stack configuration they are built from."""
