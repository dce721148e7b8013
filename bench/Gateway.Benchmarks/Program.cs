using BenchmarkDotNet.Running;

// dotnet run -c Release --project bench/Gateway.Benchmarks -- --filter '*'            (full)
// dotnet run -c Release --project bench/Gateway.Benchmarks -- --filter '*' --job short (quick)
BenchmarkSwitcher.FromAssembly(typeof(Gateway.Benchmarks.CodecBenchmarks).Assembly).Run(args);
