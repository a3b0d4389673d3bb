package platform.workers;

import java.util.Map;

/** {@code add_numbers}: operand1 + operand2. */
public final class AddPluginService extends PluginService {
    @Override
    public String primitive() {
        return "add_numbers";
    }

    @Override
    public String readyMessage() {
        return "Add plugin ready";
    }

    @Override
    public Map<String, Object> handle(Map<String, Object> arguments, InvocationContext context)
            throws PluginException {
        double operand1 = requireNumber(arguments, "operand1");
        double operand2 = requireNumber(arguments, "operand2");
        context.log("Adding " + operand1 + "+" + operand2);
        context.progress(50, "Performing...");
        double result = operand1 + operand2;
        if (!Double.isFinite(result)) {
            throw new PluginException("out_of_range", "the sum of " + operand1 + " and " + operand2 + " is too large");
        }
        return Json.object("result", result, "operation", "add", "operand1", operand1, "operand2", operand2);
    }
}
