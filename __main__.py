"""The data-plane program: load the stack's config, build the components, export the outputs."""

import pulumi

from components.load import ConfigError, load_stack_config
from components.program import build

try:
    config = load_stack_config()
except ConfigError as error:
    # RunError ends the run with the message alone: config mistakes are not crashes.
    raise pulumi.RunError(str(error)) from None

for name, value in build(config).items():
    pulumi.export(name, value)
