resource "aws_iam_openid_connect_provider" "cluster" {
  url             = "https://oidc.example.com/clusters/prod"
  client_id_list  = ["sts.amazonaws.com"]
  thumbprint_list = ["9e99a48a9960b14926bb7f3b02e22da2b0ab7280", "0123456789abcdef0123456789abcdef01234567"]
}
