print("kami-bench")
