"""LLM-written reward code: the static gate (``gate``) and the sandbox that runs it (``sandbox``).

```
check_source(text)                                  # GateError("line 4: attribute '__class__' is not allowed")
with Sandbox(text, spec) as box:
    reward, components = box(next_states, actions)  # float32 [N], {name: float32 [N]}; SandboxError on failure
print(format_layers(sandbox_layers()))              # which isolation layers this machine gives
```
"""
