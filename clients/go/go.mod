module kami.example/kami

go 1.19
