package platform.workers;

import java.util.Map;

/** {@code multiply_numbers}: operand1 × operand2. */
public final class MultiplyPluginService extends PluginService {
    @Override
    public String primitive() {
        return "multiply_numbers";
    }

    @Override
    public String readyMessage() {
        return "Multiply plugin ready";
    }

    @Override
    public Map<String, Object> handle(Map<String, Object> arguments, InvocationContext context)
            throws PluginException {
        double operand1 = requireNumber(arguments, "operand1");
        double operand2 = requireNumber(arguments, "operand2");
        context.log("Multiplying " + operand1 + "*" + operand2);
        context.progress(50, "Performing...");
        double result = operand1 * operand2;
        if (!Double.isFinite(result)) {
            throw new PluginException(
                    "out_of_range", "the product of " + operand1 + " and " + operand2 + " is too large");
        }
        return Json.object("result", result, "operation", "multiply", "operand1", operand1, "operand2", operand2);
    }
}
