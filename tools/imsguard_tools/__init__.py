"""imsguard's laptop tools: the CLI, policy tests and explain, the template model,
packaging, deploy and the fakes of IMS and FunctionGraph. None of it ships in the
function's code package; it depends on the runtime package ``imsguard``."""
