resource "aws_iam_openid_connect_provider" "cluster" {
  url             = "https://example.com/it's $(id) $${HOME}"
  client_id_list  = ["a b", "\"q\"\\"]
  thumbprint_list = ["0123456789abcdef0123456789abcdef01234567"]
}
