using Gateway.Bench.Chaos;

// The chaos soak (issue 10): bench/chaos.sh [--short | --duration S] [--seed N] [--out FILE]. See ChaosOptions.Usage.
try
{
    if (args is ["-h" or "--help"])
    {
        Console.WriteLine(ChaosOptions.Usage);
        return 0;
    }

    return await new ChaosRun(ChaosOptions.Parse(args)).RunAsync();
}
catch (ArgumentException e)
{
    Console.Error.WriteLine(e.Message);
    Console.Error.WriteLine(ChaosOptions.Usage);
    return 2;
}
