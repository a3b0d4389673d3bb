"""Schemas shared by the arithmetic plugins (the registry holds the same ones)."""

BINARY_OPERATION_INPUT = {
    "type": "object",
    "properties": {"operand1": {"type": "number"}, "operand2": {"type": "number"}},
    "required": ["operand1", "operand2"],
    "additionalProperties": False,
}


def binary_operation_output(operation: str) -> dict:
    return {
        "type": "object",
        "properties": {
            "result": {"type": "number"},
            "operation": {"const": operation},
            "operand1": {"type": "number"},
            "operand2": {"type": "number"},
        },
        "required": ["result", "operation", "operand1", "operand2"],
    }
